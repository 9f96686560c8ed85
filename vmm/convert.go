package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/p2v"
	"github.com/vmmkit/vmmkit/vhd"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// ConvertSpec says which physical disk to capture and where its image goes.
type ConvertSpec struct {
	// Source is the block device or raw disk image to capture, on the
	// machine of the manager that runs the job.
	Source string `json:"source"`
	// Name of the image, without extension: it is stored as
	// Folder/Name.vhdx (or .vhd) in Share.
	Name   string `json:"name"`
	Share  string `json:"share"`
	Folder string `json:"folder,omitempty"` // "" means "p2v"
	// Format is "vhdx" (the default) or "vhd".
	Format string `json:"format,omitempty"`
	// Deploy, when set, queues a CreateVM of the image (its Disk is set
	// to the image) once the image is in the library; VCPUs and
	// MemoryMiB are required there.
	Deploy *VMSpec `json:"deploy,omitempty"`
	User   string  `json:"user,omitempty"`
}

// ConvertResult is the result of a convert-physical job.
type ConvertResult struct {
	Object  string `json:"object"` // the image's library ID
	Path    string `json:"path"`   // SHARE:PATH of the image
	Read    int64  `json:"read"`   // bytes read from the source
	Skipped int64  `json:"skipped"`
	Size    int64  `json:"size"`              // bytes of the image
	Resumed bool   `json:"resumed,omitempty"` // the capture continued an interrupted one
	// DiskSize is the source's size, Scheme its partitioning ("mbr",
	// "gpt", ...) and FileSystems what its partitions hold ("ntfs", ...).
	DiskSize    int64    `json:"disk_size"`
	Scheme      string   `json:"scheme,omitempty"`
	FileSystems []string `json:"file_systems,omitempty"`
	DeployJob   string   `json:"deploy_job,omitempty"`
}

// ConvertPhysical queues a job that captures a physical disk (P2V) into
// a VHDX or VHD image, reading only the blocks its file systems use, copies
// the image into a library share (verified, resumable, appearing whole),
// indexes it, and, with spec.Deploy, queues a CreateVM from it. The
// capture is made in Config.WorkDir and resumes where it stopped after a
// crash (see p2v.Capture).
func (m *Manager) ConvertPhysical(ctx context.Context, spec ConvertSpec) (store.Job, error) {
	bad := func(format string, args ...any) (store.Job, error) {
		return refuse("convert physical", spec.Name, format, args...)
	}
	switch {
	case m.cfg.Library == nil:
		return bad("the manager has no library (Config.Library)")
	case spec.Source == "":
		return bad("Source is required")
	case library.CheckName(spec.Name) != nil || strings.Contains(spec.Name, "/"):
		return bad("name %q cannot be a file name", spec.Name)
	case m.cfg.Library.Share(spec.Share) == nil:
		return bad("the library has no share %q", spec.Share)
	case spec.Format != "" && spec.Format != "vhdx" && spec.Format != "vhd":
		return bad("format %q is neither vhdx nor vhd", spec.Format)
	case spec.Deploy != nil && (spec.Deploy.Name == "" || spec.Deploy.Group == "" || spec.Deploy.VCPUs <= 0 || spec.Deploy.MemoryMiB <= 0):
		return bad("Deploy needs a Name, a Group, VCPUs and MemoryMiB")
	}
	if spec.Folder == "" {
		spec.Folder = "p2v"
	}
	if err := library.CheckName(path.Join(spec.Folder, spec.Name)); err != nil {
		return bad("folder %q: %v", spec.Folder, err)
	}
	if _, err := os.Stat(spec.Source); err != nil {
		return bad("source: %v", err)
	}
	steps := []string{"capture", "upload", "index"}
	if spec.Deploy != nil {
		steps = append(steps, "deploy")
	}
	return m.Submit(ctx, KindConvertPhysical, spec.User, spec, steps...)
}

func (m *Manager) runConvertPhysical(ctx context.Context, r *Run) error {
	var in ConvertSpec
	if err := r.Input(&in); err != nil {
		return err
	}
	work := filepath.Join(m.cfg.WorkDir, "p2v-"+r.Job().ID)
	err := m.convertPhysical(ctx, r, in, work)
	if err != nil && errors.Is(context.Cause(ctx), ErrCancelled) {
		// Cancelled: the capture goes (a failed job keeps it for Retry).
		if rerr := os.RemoveAll(work); rerr != nil {
			m.log.Warn("removing a cancelled capture", "dir", work, "err", rerr)
		}
	}
	return err
}

func (m *Manager) convertPhysical(ctx context.Context, r *Run, in ConvertSpec, work string) error {
	ext := ".vhdx"
	format := vhd.FormatVHDX
	if in.Format == "vhd" {
		ext, format = ".vhd", vhd.FormatVHD
	}
	image := filepath.Join(work, in.Name+ext)
	dstName := path.Join(in.Folder, in.Name+ext)
	lib := m.cfg.Library

	res, err := Do(ctx, r, "capture", func(ctx context.Context, _ bool) (ConvertResult, error) {
		// Capture resumes an interrupted capture of the same arguments.
		if err := os.MkdirAll(work, 0o700); err != nil {
			return ConvertResult{}, err
		}
		src, err := p2v.OpenDevice(in.Source)
		if err != nil {
			return ConvertResult{}, err
		}
		defer src.Close()
		cr, err := p2v.Capture(ctx, src, image, &p2v.Options{Format: format, Progress: func(p p2v.Progress) {
			if p.Total > 0 {
				r.Progress(float64(p.Done) / float64(p.Total))
			}
		}})
		if err != nil {
			return ConvertResult{}, err
		}
		fi, err := os.Stat(image)
		if err != nil {
			return ConvertResult{}, err
		}
		res := ConvertResult{Read: cr.Read, Skipped: cr.Skipped, Size: fi.Size(), Resumed: cr.Resumed, DiskSize: src.Size()}
		if cr.Layout != nil {
			res.Scheme = cr.Layout.Scheme
			for _, p := range cr.Layout.Partitions {
				fs := p.FS
				if fs == "" {
					fs = "unknown"
				}
				res.FileSystems = append(res.FileSystems, fs)
			}
		}
		return res, nil
	})
	if err != nil {
		return err
	}

	if _, err := Do(ctx, r, "upload", func(ctx context.Context, _ bool) (string, error) {
		dst := lib.Share(in.Share)
		if dst == nil {
			return "", fmt.Errorf("the library has no share %q", in.Share)
		}
		ws, err := library.NewDirShare("p2v-work", "", work)
		if err != nil {
			return "", err
		}
		f, err := os.Open(image)
		if err != nil {
			return "", err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return "", err
		}
		man, err := library.Hash(ctx, f, fi.Size(), nil)
		f.Close()
		if err != nil {
			return "", err
		}
		err = library.Copy(ctx, ws, filepath.Base(image), man, dst, dstName, &library.CopyOptions{Progress: func(done, total int64) {
			if total > 0 {
				r.Progress(float64(done) / float64(total))
			}
		}})
		if errors.Is(err, library.ErrExist) {
			// Committed by an earlier attempt, or somebody else's file:
			// the same content is ours.
			if same, serr := sameContent(ctx, dst, dstName, man); serr != nil || !same {
				return "", fmt.Errorf("%s:%s exists and is another image: %w", in.Share, dstName, err)
			}
			err = nil
		}
		return man.ID(), err
	}); err != nil {
		return err
	}

	obj, err := Do(ctx, r, "index", func(ctx context.Context, _ bool) (string, error) {
		if _, err := lib.Refresh(ctx); err != nil {
			return "", err
		}
		for _, o := range lib.Find(in.Share + ":" + dstName) {
			if o.Problem != "" {
				return "", fmt.Errorf("the library finds %s:%s broken: %s", in.Share, dstName, o.Problem)
			}
			return o.ID, nil
		}
		return "", fmt.Errorf("the library does not list %s:%s after the upload", in.Share, dstName)
	})
	if err != nil {
		return err
	}
	res.Object, res.Path = obj, in.Share+":"+dstName

	if in.Deploy != nil {
		res.DeployJob, err = Do(ctx, r, "deploy", func(ctx context.Context, resumed bool) (string, error) {
			spec := *in.Deploy
			spec.Template, spec.Disk = "", obj
			if spec.User == "" {
				spec.User = r.Job().User
			}
			if resumed {
				// A job queued by an earlier attempt.
				js, err := m.st.Jobs(ctx, store.JobFilter{Kind: KindCreateVM})
				if err != nil {
					return "", err
				}
				for _, j := range js {
					if strings.Contains(string(j.Input), `"convert_job":"`+r.Job().ID+`"`) {
						return j.ID, nil
					}
				}
			}
			j, err := m.submitCreateVM(ctx, spec, r.Job().ID)
			return j.ID, err
		})
		if err != nil {
			return err
		}
	}
	if err := os.RemoveAll(work); err != nil {
		m.log.Warn("removing a capture's work folder", "dir", work, "err", err)
	}
	return r.SetResult(res)
}

// sameContent reports whether name in share has the content m describes.
func sameContent(ctx context.Context, share library.Share, name string, m *library.Manifest) (bool, error) {
	f, err := share.Open(ctx, name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := share.Stat(ctx, name)
	if err != nil {
		return false, err
	}
	if fi.Size != m.Size {
		return false, nil
	}
	got, err := library.Hash(ctx, f, fi.Size, &library.HashOptions{ChunkSize: m.ChunkSize})
	if err != nil {
		return false, err
	}
	return got.ID() == m.ID(), nil
}

package selfservice_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// A browser is a headless Chromium driven through the DevTools protocol,
// with a fresh profile. It keeps a screenshot and the HTML of every page a
// step ends on, and writes them to a folder when the test fails (or, with
// VMM_TEST_KEEP_SCREENSHOTS set, always).
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots []shot
}

type shot struct {
	name string
	png  []byte
	html string
}

func newBrowser(t *testing.T, exe, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(412, 915), // a phone-sized screen
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	b := &browser{t: t, ctx: ctx, base: base}
	t.Cleanup(func() {
		if t.Failed() {
			b.snap("at-failure")
			b.save()
		} else if os.Getenv("VMM_TEST_KEEP_SCREENSHOTS") != "" {
			b.save()
		}
		cancel()
		cancelAlloc()
	})
	// Start the browser now (the first run must not carry a deadline: it
	// would end the browser), so that a Chromium that cannot start fails
	// here.
	require.NoError(t, chromedp.Do(ctx), "starting %s", exe)
	return b
}

// run runs a step's action, bounded in time, and returns its value.
func run[T any](b *browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(b.t, err, "browser step %q", step)
	return v
}

// do runs a step of actions that return nothing and keeps what the page
// shows at its end.
func (b *browser) do(step string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, steps...)
	b.snap(step)
	require.NoError(b.t, err, "browser step %q", step)
}

func (b *browser) snap(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s := shot{name: fmt.Sprintf("%02d-%s", len(b.shots)+1, strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '\\' || r == '\'' {
			return '-'
		}
		return r
	}, name))}
	s.png, _ = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	s.html, _ = chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	b.shots = append(b.shots, s)
}

// save writes the screenshots and pages under the temporary folder, kept
// after the test so that a person can look at them.
func (b *browser) save() {
	dir, err := os.MkdirTemp("", "vmmkit-browser-")
	if err != nil {
		b.t.Logf("cannot save the screenshots: %v", err)
		return
	}
	for _, s := range b.shots {
		if len(s.png) > 0 {
			_ = os.WriteFile(filepath.Join(dir, s.name+".png"), s.png, 0o644)
		}
		_ = os.WriteFile(filepath.Join(dir, s.name+".html"), []byte(s.html), 0o644)
	}
	b.t.Logf("screenshots and pages of each step: %s", dir)
}

// text returns the visible text of the page.
func (b *browser) text() string {
	b.t.Helper()
	return run(b, "read the page", chromedp.Evaluate[string](`document.body.innerText`))
}

// path returns the path of the page the browser shows.
func (b *browser) path() string {
	b.t.Helper()
	return run(b, "read the address", chromedp.Evaluate[string](`location.pathname`))
}

func (b *browser) signIn(user, password string) {
	b.t.Helper()
	b.do("sign in as "+user,
		chromedp.Navigate(b.base+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#user")),
		chromedp.SendKeys(chromedp.CSS("#user"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signin")),
		// the next page: signed in (nav) or refused (an error)
		chromedp.WaitVisible(chromedp.CSS("nav, p.error")),
	)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do("sign out",
		chromedp.Click(chromedp.CSS(`nav form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#signin")),
	)
}

// waitText waits until the element sel's text is want. The job page
// changes it as the server's events arrive.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e && e.textContent.trim() === %q; })()`, sel, want),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

// create asks for a VM named name from the create page and returns the
// path the browser is on afterwards.
func (b *browser) create(name string) string {
	b.t.Helper()
	b.do("create "+name,
		chromedp.Click(chromedp.CSS("#new-vm")),
		chromedp.WaitVisible(chromedp.CSS("#name-dev-web-small")),
		chromedp.SendKeys(chromedp.CSS("#name-dev-web-small"), name),
		chromedp.Submit(chromedp.CSS("#name-dev-web-small")),
		// the next page: the job, or the form again with the refusal
		chromedp.WaitVisible(chromedp.CSS("#job-state, #error")),
	)
	return b.path()
}

// TestBrowser drives the portal as a person does, in Debian's Chromium,
// signed in against the Samba AD: sign in, create a VM, watch it run, stop
// it, reach the quota; a second user cannot see or act on the first's VM,
// even by crafted requests; sign-out.
func TestBrowser(t *testing.T) {
	exe := testenv.Tool(t, "VMM_TEST_CHROMIUM", "chromium")
	ad := loadTestAD(t)
	p := newPortalWith(t, vmm.Config{}, portalOptions{Auth: ad.dir, DevGroup: "vmm-dev", QAGroup: "vmm-qa",
		DevActions: []string{"create", "start", "stop", "remove", "console"}})
	b := newBrowser(t, exe, p.srv.URL)

	// A user without a role is told so.
	b.signIn("vmm-dave", ad.password)
	assert.Contains(t, b.text(), "Your account has no access to this portal.")

	// A wrong password.
	b.signIn("vmm-alice", ad.password+"x")
	assert.Contains(t, b.text(), "Wrong user name or password.")

	// Sign in, create, watch the job until the VM runs.
	b.signIn("vmm-alice", ad.password)
	page := b.text()
	assert.Contains(t, page, "My VMs")
	assert.Contains(t, page, "You have no VMs yet.")
	assert.NotContains(t, page, "development mode")
	loc := b.create("web-alice-1")
	require.True(t, strings.HasPrefix(loc, "/jobs/"), "after create the browser shows the job, not %s", loc)
	aliceJob := strings.TrimPrefix(loc, "/jobs/")
	b.do("watch the job",
		waitText("#job-state", string(store.JobSucceeded)),
		chromedp.Click(chromedp.CSS("#job-vm")),
		chromedp.WaitVisible(chromedp.CSS("#state")),
	)
	assert.Equal(t, "running", run(b, "VM state", chromedp.Text(chromedp.CSS("#state"))))
	aliceVM := strings.TrimPrefix(b.path(), "/vms/")
	info, err := p.m.VMInfo(t.Context(), aliceVM)
	require.NoError(t, err)
	assert.Equal(t, info.Console, run(b, "console", chromedp.Text(chromedp.CSS("#console"))))
	require.Equal(t, p.vmID(t, "web-alice-1"), aliceVM)

	// Stop it from its page.
	b.do("stop",
		chromedp.Click(chromedp.CSS("#act-stop")),
		chromedp.WaitVisible(chromedp.CSS("#job-state")),
		waitText("#job-state", string(store.JobSucceeded)),
		chromedp.Click(chromedp.CSS("#job-vm")),
		chromedp.WaitVisible(chromedp.CSS("#state")),
	)
	assert.Equal(t, "stopped", run(b, "VM state", chromedp.Text(chromedp.CSS("#state"))))
	assert.Equal(t, "stopped", string(vmsNamed(t, p, "web-alice-1")[0].State), "the inventory agrees with the page")

	// Quota: 4 points, web-small costs 2, so the second VM fits and the
	// third is refused with the quota message.
	b.do("home", chromedp.Navigate(p.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#new-vm")))
	loc = b.create("web-alice-2")
	require.True(t, strings.HasPrefix(loc, "/jobs/"), loc)
	b.do("second job", waitText("#job-state", string(store.JobSucceeded)))
	b.do("home", chromedp.Navigate(p.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#new-vm")))
	loc = b.create("web-alice-3")
	assert.Equal(t, "/vms", loc, "a refused create stays on the form")
	msg := run(b, "quota message", chromedp.Text(chromedp.CSS("#error")))
	assert.Contains(t, msg, "exceed your quota")
	assert.Contains(t, msg, "4 of 4 points")
	assert.Len(t, vmsNamed(t, p, "web-alice-3"), 0, "nothing was made past the quota")

	// Sign out: the session is gone, pages ask to sign in again.
	b.signOut()
	b.do("home after sign-out", chromedp.Navigate(p.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")))

	// A second user of the same (not shared) role sees none of alice's VMs
	// and cannot reach them by address or by crafted requests.
	b.signIn("vmm-bob", ad.password)
	page = b.text()
	assert.Contains(t, page, "Sign out vmm-bob")
	assert.NotContains(t, page, "web-alice")
	b.do("alice's VM by address", chromedp.Navigate(p.srv.URL+"/vms/"+aliceVM), chromedp.WaitVisible(chromedp.CSS("h1")))
	page = b.text()
	assert.Contains(t, page, "There is no such VM among yours.")
	assert.NotContains(t, page, "web-alice-1")
	b.do("alice's job by address", chromedp.Navigate(p.srv.URL+"/jobs/"+aliceJob), chromedp.WaitVisible(chromedp.CSS("h1")))
	assert.Contains(t, b.text(), "There is no such job of yours.")
	// Crafted from bob's page, with bob's own valid CSRF token.
	b.do("bob's page", chromedp.Navigate(p.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("h1")))
	statuses := run(b, "crafted requests", chromedp.Evaluate[[]int](fmt.Sprintf(`(async () => {
			const csrf = document.querySelector('input[name="csrf"]').value;
			const post = (path) => fetch(path, {method: "POST", redirect: "manual",
				headers: {"Content-Type": "application/x-www-form-urlencoded"},
				body: new URLSearchParams({csrf: csrf}).toString()}).then(r => r.status);
			return [await post("/vms/%[1]s/start"), await post("/vms/%[1]s/remove"),
				(await fetch("/jobs/%[2]s/events")).status];
		})()`, aliceVM, aliceJob), chromedp.EvalAwaitPromise))
	assert.Equal(t, []int{404, 404, 404}, statuses)
	assert.Equal(t, "stopped", string(vmsNamed(t, p, "web-alice-1")[0].State), "alice's VM is untouched")
	b.signOut()
}

// vmsNamed returns the inventory's VMs named name in the portal's group.
func vmsNamed(t *testing.T, p *portal, name string) []store.VM {
	t.Helper()
	vms, err := p.m.VMs(t.Context(), store.VMFilter{GroupID: p.group})
	require.NoError(t, err)
	var out []store.VM
	for _, v := range vms {
		if v.Name == name {
			out = append(out, v)
		}
	}
	return out
}

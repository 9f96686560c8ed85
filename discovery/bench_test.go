package discovery_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/internal/benchkit"
)

// benchAttributes are the attributes Hosts asks for, for ldapsearch.
var benchAttributes = []string{
	"cn", "dNSHostName", "sAMAccountName", "operatingSystem", "operatingSystemVersion",
	"operatingSystemServicePack", "description", "location", "managedBy",
	"servicePrincipalName", "objectGUID", "whenChanged", "uSNChanged", "userAccountControl",
}

const benchFilter = "(&(objectCategory=computer)(objectClass=computer)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"

func benchOU(b *testing.B) (adEnv, string) {
	ou := os.Getenv("VMM_TEST_LDAP_BENCH_OU")
	if os.Getenv("VMM_TEST_LDAP_URL") == "" || ou == "" {
		b.Skip("VMM_TEST_LDAP_URL or VMM_TEST_LDAP_BENCH_OU not set (run: VMM_TEST_BENCH_HOSTS=10000 scripts/samba-ad.sh start)")
	}
	return loadAD(b), ou
}

// BenchmarkEnumerate reads the enabled computers of the benchmark OU (10 000
// accounts) over StartTLS with a simple bind, connecting each time, and
// compares it in the same run with ldapsearch -E pr=500/noprompt fetching
// the same attributes with the same filter.
func BenchmarkEnumerate(b *testing.B) {
	e, ou := benchOU(b)
	ldapsearch, err := exec.LookPath("ldapsearch")
	if err != nil {
		b.Skip("ldapsearch not on PATH")
	}
	cfg := e.config(e.URL)
	enumerate := func() (int, error) {
		c, err := discovery.Dial(b.Context(), cfg)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		n := 0
		for _, err := range c.Hosts(b.Context(), discovery.Query{OU: ou}) {
			if err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
	hosts, err := enumerate()
	if err != nil {
		b.Fatal(err)
	}

	pwFile := filepath.Join(b.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(e.Password), 0o600); err != nil {
		b.Fatal(err)
	}
	anchor := func() error {
		args := append([]string{"-LLL", "-x", "-ZZ", "-H", e.URL, "-D", e.BindDN, "-y", pwFile,
			"-E", "pr=500/noprompt", "-b", ou, benchFilter}, benchAttributes...)
		cmd := exec.Command(ldapsearch, args...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+e.CACert)
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("ldapsearch: %v", err)
		}
		if got := strings.Count(string(out), "\ndn: ") + 1; got != hosts {
			return fmt.Errorf("ldapsearch found %d entries, discovery %d", got, hosts)
		}
		return nil
	}
	h := &benchkit.Harness{TB: b, Reps: 5}
	a := h.Run(fmt.Sprintf("ldapsearch -E pr=500/noprompt (%d hosts)", hosts), nil, anchor)
	x := h.Run(fmt.Sprintf("discovery Dial+Hosts (%d hosts)", hosts), nil, func() error {
		_, err := enumerate()
		return err
	})
	h.Table("enumerate the benchmark OU over StartTLS")
	h.Ratio("discovery.Hosts vs ldapsearch (10k hosts)", a, x, ">= 0.67, i.e. at most 1.5x ldapsearch's time")

	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := enumerate(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(hosts), "hosts")
}

// BenchmarkChangesNoChange polls the benchmark OU for changes when no host
// changed (target: at most 50 ms a poll): with nothing written on the server
// at all, and with an unrelated object (a user) changed before each poll.
func BenchmarkChangesNoChange(b *testing.B) {
	e, ou := benchOU(b)
	c, err := discovery.Dial(b.Context(), e.config(e.URL))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_, cur, err := c.Changes(b.Context(), discovery.NewCursor(discovery.Query{OU: ou}))
	if err != nil {
		b.Fatal(err)
	}
	admin := adminConn(b, e)
	for _, tc := range []struct {
		name  string
		write bool
	}{{"quiet", false}, {"user changed", true}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var total time.Duration
			i := 0
			for b.Loop() {
				if tc.write {
					b.StopTimer()
					mod := ldap.NewModifyRequest(e.UserDN, nil)
					mod.Replace("description", []string{fmt.Sprintf("benchmark poll %d", i)})
					if err := admin.Modify(mod); err != nil {
						b.Fatal(err)
					}
					i++
					b.StartTimer()
				}
				start := time.Now()
				changes, next, err := c.Changes(b.Context(), cur)
				total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if len(changes) != 0 {
					b.Fatalf("%d changes, want none", len(changes))
				}
				cur = next
			}
			fmt.Printf("poll with no host changed (%s) over %d hosts: %v a poll (target <= 50ms)\n",
				tc.name, len(cur.Hosts), (total / time.Duration(b.N)).Round(time.Microsecond))
		})
	}
}

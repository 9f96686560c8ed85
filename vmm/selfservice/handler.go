package selfservice

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Config sets up the portal. Zero fields mean the defaults given.
type Config struct {
	// Manager runs the VMs' jobs. Required.
	Manager *vmm.Manager
	// Roles, set by the administrator; a user may be in several.
	Roles []Role
	// Auth checks sign-ins. Required.
	Auth Authenticator
	// AdminUsers and AdminGroups may see every role on the roles page;
	// others see their own.
	AdminUsers, AdminGroups []string
	// Dev labels every page "development mode" (with DevUsers).
	Dev bool
	// SharedSessions keeps sessions in the manager's store (SQLite or
	// PostgreSQL; only a digest of each cookie's token) instead of the
	// Handler's memory: several portal processes on one database share
	// them, behind a load balancer without sticky sessions, and a restart
	// keeps users signed in. Their expiry is checked with the store's
	// clock.
	SharedSessions bool
	// SessionTTL is how long a sign-in lasts; 0 means 8 hours.
	SessionTTL time.Duration
	// Secure marks the session cookie Secure even when the request did
	// not come over TLS (behind a TLS-terminating proxy).
	Secure bool
	// TrustedProxies are the reverse proxies in front of the portal. A
	// request from one of them is taken to come from the last address of
	// its X-Forwarded-For that is not a trusted proxy, for the sign-in
	// limits per address and the log; otherwise every user behind the
	// proxy would share its limit. Empty: RemoteAddr, always. The
	// prefixes must hold the proxies only, never a network of clients: a
	// client in one could name any address it likes.
	TrustedProxies []netip.Prefix
	// LoginLimit is the failed sign-ins allowed per user name and per
	// address in LoginWindow before more are refused; 0 means 5 a minute.
	LoginLimit  int
	LoginWindow time.Duration
	// Logger receives sign-ins and refusals; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// A Handler is the portal, an http.Handler to mount. It is safe for
// concurrent use. Sessions live in its memory: a restart signs everyone
// out.
type Handler struct {
	cfg   Config
	roles []*Role
	mux   *http.ServeMux
	tmpl  *template.Template
	log   *slog.Logger
	now   func() time.Time
	users *limiter
	addrs *limiter
	// userTurns: one sign-in per user name at a time; addrTurns: a few
	// per address.
	userTurns, addrTurns turns

	sessions sessionKeeper
}

type session struct {
	id, csrf string
	who      Identity
	expires  time.Time
}

const cookieName = "vmm_session"

// signInsPerAddress is how many sign-ins of one address are checked at
// once; more wait their turn.
const signInsPerAddress = 8

// New checks cfg and returns the portal.
func New(cfg Config) (*Handler, error) {
	if cfg.Manager == nil || cfg.Auth == nil {
		return nil, errors.New("selfservice: Config.Manager and Config.Auth are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.LoginLimit <= 0 {
		cfg.LoginLimit = 5
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, now: cfg.Now,
		users: newLimiter(cfg.LoginLimit, cfg.LoginWindow), addrs: newLimiter(4*cfg.LoginLimit, cfg.LoginWindow),
		userTurns: turns{n: 1}, addrTurns: turns{n: signInsPerAddress}}
	h.sessions = &memSessions{now: cfg.Now, m: map[string]*session{}}
	if cfg.SharedSessions {
		ss, ok := cfg.Manager.Store().(store.SessionStore)
		if !ok {
			return nil, fmt.Errorf("selfservice: SharedSessions: the manager's store (%T) keeps no sessions", cfg.Manager.Store())
		}
		h.sessions = &storeSessions{st: ss, now: cfg.Now, log: cfg.Logger}
	}
	names := map[string]bool{}
	for i := range cfg.Roles {
		r := cfg.Roles[i] // a copy: the caller's slice is not changed
		if err := r.check(); err != nil {
			return nil, err
		}
		if names[r.Name] {
			return nil, fmt.Errorf("selfservice: two roles named %s", r.Name)
		}
		names[r.Name] = true
		h.roles = append(h.roles, &r)
	}
	t, err := template.New("").Funcs(template.FuncMap{
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
		"stateClass": func(s string) string {
			switch s {
			case "running":
				return "ok"
			case "creating", vmm.VMFailed, vmm.VMMissing:
				return "warn"
			}
			return ""
		},
	}).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	h.tmpl = t
	static, _ := fs.Sub(assets, "static")
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("POST /logout", h.signedIn(h.logout))
	m.HandleFunc("GET /{$}", h.signedIn(h.list))
	m.HandleFunc("GET /new", h.signedIn(h.newPage))
	m.HandleFunc("POST /vms", h.signedIn(h.create))
	m.HandleFunc("GET /vms/{id}", h.signedIn(h.vmPage))
	m.HandleFunc("POST /vms/{id}/{action}", h.signedIn(h.act))
	m.HandleFunc("GET /jobs/{id}", h.signedIn(h.jobPage))
	m.HandleFunc("GET /jobs/{id}/events", h.signedIn(h.jobEvents))
	m.HandleFunc("GET /admin/roles", h.signedIn(h.rolesPage))
	h.mux = m
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// --- sessions

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (h *Handler) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) > 64 {
		return nil
	}
	s, err := h.sessions.get(r.Context(), c.Value)
	if err != nil {
		h.log.Warn("the session cannot be read", "err", err)
		return nil
	}
	return s
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn lets through requests of a live session, and POSTs only with
// its CSRF token.
func (h *Handler) signedIn(f handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(r)
		if s == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/jobs/"+r.PathValue("id")+"/events" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			tok := r.PostFormValue("csrf")
			if subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
				h.log.Warn("request without a valid CSRF token", "user", s.who.User, "path", r.URL.Path)
				http.Error(w, "the form expired; reload the page", http.StatusForbidden)
				return
			}
		}
		f(w, r, s)
	}
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.session(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, "login.html", nil, map[string]any{})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	user, pass := r.PostFormValue("user"), r.PostFormValue("password")
	addr := h.clientAddr(r)
	ukey, akey := "user:"+userKey(user), addrKey(addr)
	// Sign-ins of one user name take turns, and one address has a few
	// at a time, so that guesses sent at once cannot all pass the limit
	// while the first are still being checked.
	releaseAddr, err := h.addrTurns.acquire(r.Context(), akey)
	if err != nil {
		return // the client went away
	}
	defer releaseAddr()
	releaseUser, err := h.userTurns.acquire(r.Context(), ukey)
	if err != nil {
		return
	}
	defer releaseUser()
	now := h.now()
	if h.users.blocked(ukey, now) || h.addrs.blocked(akey, now) {
		h.tooMany(w, r, user)
		return
	}
	if user == "" || pass == "" || len(user) > 256 || len(pass) > 1024 {
		h.loginAgain(w, http.StatusUnauthorized, msgWrongPassword, user)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	who, err := h.cfg.Auth.Authenticate(ctx, user, pass)
	if errors.Is(err, ErrBadCredentials) {
		h.users.fail(ukey, now)
		h.addrs.fail(akey, now)
	}
	// The account's own name shares the failures of every spelling: once
	// it is over the limit, any spelling is refused whether the password
	// was right or wrong (the answer must not tell which), and a failure
	// counts under it too.
	var bce *BadCredentialsError
	canon := ""
	if errors.As(err, &bce) {
		canon = "user:" + bce.User
	} else if err == nil {
		canon = "user:" + who.User
	}
	if canon != "" && canon != ukey {
		if h.users.blocked(canon, now) {
			h.tooMany(w, r, user)
			return
		}
		if bce != nil {
			h.users.fail(canon, now)
		}
	}
	if err != nil {
		if errors.Is(err, ErrBadCredentials) {
			h.log.Info("sign-in failed", "user", user, "addr", addr, "err", err)
			h.loginAgain(w, http.StatusUnauthorized, msgWrongPassword, user)
			return
		}
		h.log.Error("sign-in: the directory did not answer", "user", user, "err", err)
		h.loginAgain(w, http.StatusServiceUnavailable, msgSignInUnavailable, user)
		return
	}
	if len(h.rolesOf(who)) == 0 {
		h.log.Info("sign-in of a user without a role", "user", who.User)
		h.loginAgain(w, http.StatusForbidden, "Your account has no access to this portal.", user)
		return
	}
	s := &session{id: randomToken(), csrf: randomToken(), who: who, expires: now.Add(h.cfg.SessionTTL)}
	if err := h.sessions.put(r.Context(), s); err != nil {
		h.log.Error("sign-in: the session cannot be kept", "user", who.User, "err", err)
		h.loginAgain(w, http.StatusServiceUnavailable, msgSignInUnavailable, user)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: h.cfg.Secure || r.TLS != nil, Expires: s.expires})
	h.log.Info("signed in", "user", who.User, "addr", addr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// clientAddr is the address a request came from: its RemoteAddr, or, when
// that is one of Config.TrustedProxies, the last address in its
// X-Forwarded-For that is not a trusted proxy (the ones before it could be
// anything the client wrote).
func (h *Handler) clientAddr(r *http.Request) string {
	addr := r.RemoteAddr
	if len(h.cfg.TrustedProxies) == 0 || !h.trusted(addr) {
		return addr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, f := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(f))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			// Some proxies write the port too: "192.0.2.1:4321", "[::1]:443".
			ap, perr := netip.ParseAddrPort(hops[i])
			if perr != nil {
				h.log.Warn("X-Forwarded-For from a trusted proxy holds no address; the proxy's is used", "hop", hops[i], "proxy", r.RemoteAddr)
				return addr
			}
			a = ap.Addr()
		}
		ap := netip.AddrPortFrom(a.Unmap(), 0).String()
		if !h.trusted(ap) {
			return ap
		}
		addr = ap
	}
	return addr
}

// trusted reports whether addr ("ip:port") is in Config.TrustedProxies.
func (h *Handler) trusted(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	for _, p := range h.cfg.TrustedProxies {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

func (h *Handler) tooMany(w http.ResponseWriter, r *http.Request, user string) {
	h.log.Warn("sign-in refused: too many failures", "user", user, "addr", h.clientAddr(r))
	h.loginAgain(w, http.StatusTooManyRequests, "Too many failed sign-ins. Wait a minute and try again.", "")
}

// What the sign-in page says when it refuses. A wrong password and an
// unknown user read the same.
const (
	msgWrongPassword     = "Wrong user name or password."
	msgSignInUnavailable = "Sign-in is not available now. Try again later."
)

// loginAgain shows the sign-in page again with msg, the user name kept.
func (h *Handler) loginAgain(w http.ResponseWriter, code int, msg, user string) {
	h.render(w, code, "login.html", nil, map[string]any{"Error": msg, "User": user})
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := h.sessions.drop(r.Context(), s.id); err != nil {
		h.log.Error("sign-out: the session cannot be ended", "user", s.who.User, "err", err)
		h.fail(w, s, http.StatusServiceUnavailable, "Signing out is not possible now. Try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, MaxAge: -1,
		SameSite: http.SameSiteStrictMode, Secure: h.cfg.Secure || r.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func userKey(user string) string {
	// One key for every spelling of a directory account: "Alice",
	// "LAB\alice" and "alice@lab.example.com" share their failures.
	user = strings.ToLower(user)
	if i := strings.LastIndexByte(user, '\\'); i >= 0 {
		user = user[i+1:]
	}
	if i := strings.IndexByte(user, '@'); i >= 0 {
		user = user[:i]
	}
	return user
}

// --- roles and VMs

func (h *Handler) rolesOf(who Identity) []*Role {
	var out []*Role
	for _, r := range h.roles {
		if r.has(who) {
			out = append(out, r)
		}
	}
	return out
}

// vmView is a VM as the portal shows it, with the role it falls under.
type vmView struct {
	store.VM
	Host    string // the host's name; "" while unplaced
	Role    *Role
	Actions []string
}

// visible lists the VMs s may see: their own in each role's host group, or
// every VM of a shared role.
func (h *Handler) visible(ctx context.Context, s *session) ([]vmView, error) {
	var out []vmView
	seen := map[string]bool{}
	for _, r := range h.rolesOf(s.who) {
		vms, err := h.cfg.Manager.VMs(ctx, store.VMFilter{GroupID: r.HostGroup, Owner: r.owner(s.who.User)})
		if err != nil {
			return nil, err
		}
		if len(vms) == 0 {
			continue
		}
		hosts, err := h.cfg.Manager.Hosts(ctx, r.HostGroup)
		if err != nil {
			return nil, err
		}
		names := make(map[string]string, len(hosts))
		for _, ho := range hosts {
			names[ho.ID] = ho.Name
		}
		for _, v := range vms {
			if seen[v.ID] {
				continue
			}
			seen[v.ID] = true
			out = append(out, vmView{VM: v, Host: names[v.HostID], Role: r, Actions: vmActions(r, v.State)})
		}
	}
	slices.SortFunc(out, func(a, b vmView) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// vmActions are the actions of role r that make sense in state st.
func vmActions(r *Role, st string) []string {
	var can []string
	switch st {
	case "running":
		can = []string{ActShutdown, ActStop, ActPause, ActReboot}
	case "stopped", "crashed":
		can = []string{ActStart, ActRemove}
	case "paused":
		can = []string{ActPause, ActStop}
	case vmm.VMMissing:
		can = []string{ActRemove}
	}
	var out []string
	for _, a := range can {
		if r.allows(a) {
			out = append(out, a)
		}
	}
	return out
}

// find returns VM id if s may see it; the ID alone is no authority.
func (h *Handler) find(ctx context.Context, s *session, id string) (vmView, bool, error) {
	vms, err := h.visible(ctx, s)
	if err != nil {
		return vmView{}, false, err
	}
	for _, v := range vms {
		if v.ID == id {
			return v, true, nil
		}
	}
	return vmView{}, false, nil
}

// --- pages

func (h *Handler) render(w http.ResponseWriter, code int, name string, s *session, data map[string]any) {
	data["Dev"] = h.cfg.Dev
	if s != nil {
		data["User"] = s.who.User
		data["CSRF"] = s.csrf
		data["SignedIn"] = true
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := h.tmpl.ExecuteTemplate(w, name, data); err != nil {
		h.log.Error("rendering a page", "page", name, "err", err)
	}
}

func (h *Handler) fail(w http.ResponseWriter, s *session, code int, msg string) {
	h.render(w, code, "error.html", s, map[string]any{"Message": msg, "Code": code})
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, s *session) {
	vms, err := h.visible(r.Context(), s)
	if err != nil {
		h.log.Error("listing VMs", "user", s.who.User, "err", err)
		h.fail(w, s, http.StatusInternalServerError, "The VMs cannot be listed now.")
		return
	}
	canCreate := false
	for _, ro := range h.rolesOf(s.who) {
		canCreate = canCreate || ro.allows(ActCreate)
	}
	h.render(w, http.StatusOK, "list.html", s, map[string]any{"VMs": vms, "CanCreate": canCreate})
}

// offer is a template a user may create, under a role.
type offer struct {
	Role     string
	Template string
	Points   int
	Left     int // points (or VMs) left; -1 for no cap
}

func (h *Handler) offers(ctx context.Context, s *session) ([]offer, error) {
	var out []offer
	for _, ro := range h.rolesOf(s.who) {
		if !ro.allows(ActCreate) {
			continue
		}
		left := -1
		if ro.limit() > 0 {
			used, err := h.usedPoints(ctx, ro.owner(s.who.User))
			if err != nil {
				return nil, err
			}
			left = max(0, ro.limit()-used)
		}
		for _, t := range ro.Templates {
			out = append(out, offer{Role: ro.Name, Template: t, Points: ro.cost(t), Left: left})
		}
	}
	return out, nil
}

// usedPoints sums the quota points of owner's VMs.
func (h *Handler) usedPoints(ctx context.Context, owner string) (int, error) {
	vms, err := h.cfg.Manager.VMs(ctx, store.VMFilter{Owner: owner})
	used := 0
	for _, v := range vms {
		used += v.Points
	}
	return used, err
}

func (h *Handler) newPage(w http.ResponseWriter, r *http.Request, s *session) {
	offers, err := h.offers(r.Context(), s)
	if err != nil {
		h.fail(w, s, http.StatusInternalServerError, "The templates cannot be listed now.")
		return
	}
	if len(offers) == 0 {
		h.fail(w, s, http.StatusForbidden, "Your roles do not let you create VMs.")
		return
	}
	h.render(w, http.StatusOK, "new.html", s, map[string]any{"Offers": offers})
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, s *session) {
	roleName, tmpl, name := r.PostFormValue("role"), r.PostFormValue("template"), r.PostFormValue("name")
	var ro *Role
	for _, x := range h.rolesOf(s.who) {
		if x.Name == roleName {
			ro = x
		}
	}
	again := func(code int, msg string) {
		offers, _ := h.offers(r.Context(), s)
		h.render(w, code, "new.html", s, map[string]any{"Offers": offers, "Error": msg, "Name": name})
	}
	switch {
	case ro == nil || !ro.allows(ActCreate) || !ro.template(tmpl):
		h.log.Warn("create refused: not allowed", "user", s.who.User, "role", roleName, "template", tmpl)
		again(http.StatusForbidden, "That template is not one your roles allow.")
		return
	case !ro.names.MatchString(name):
		again(http.StatusBadRequest, "The name does not follow the pattern your role sets.")
		return
	}
	pts := ro.cost(tmpl)
	// Said at once when already over; the job's reserve step checks it
	// again atomically with the insert (requests at the same time).
	if lim := ro.limit(); lim > 0 {
		used, err := h.usedPoints(r.Context(), ro.owner(s.who.User))
		if err != nil {
			again(http.StatusInternalServerError, "The quota cannot be checked now.")
			return
		}
		if used+pts > lim {
			again(http.StatusBadRequest, fmt.Sprintf("The VM cannot be created: it would exceed your quota (%d of %d points used).", used, lim))
			return
		}
	}
	job, err := h.cfg.Manager.CreateVM(r.Context(), vmm.VMSpec{Name: name, Group: ro.HostGroup, Template: tmpl,
		Owner: ro.owner(s.who.User), User: s.who.User, Points: pts, QuotaLimit: ro.limit()})
	if err != nil {
		h.log.Warn("create refused", "user", s.who.User, "vm", name, "err", err)
		again(http.StatusBadRequest, "The VM cannot be created: "+publicReason(err))
		return
	}
	http.Redirect(w, r, "/jobs/"+job.ID, http.StatusSeeOther)
}

// publicReason says why a request failed without internal detail.
func publicReason(err error) string {
	switch {
	case errors.Is(err, store.ErrQuota):
		return "it would exceed your quota."
	case errors.Is(err, store.ErrExists):
		return "a VM of that name exists."
	case errors.Is(err, store.ErrInvalid):
		return "the request is not valid."
	case errors.Is(err, store.ErrConflict):
		return "the VM is busy; try again when its job ended."
	}
	return "an internal error; try again later."
}

func (h *Handler) vmPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok, err := h.find(r.Context(), s, r.PathValue("id"))
	if err != nil {
		h.fail(w, s, http.StatusInternalServerError, "The VM cannot be read now.")
		return
	}
	if !ok {
		h.fail(w, s, http.StatusNotFound, "There is no such VM among yours.")
		return
	}
	data := map[string]any{"VM": v}
	if v.Role.allows(ActConsole) && v.State == "running" {
		info, err := h.cfg.Manager.VMInfo(r.Context(), v.ID)
		switch {
		case err != nil:
			h.log.Warn("the console of a VM cannot be read", "vm", v.ID, "err", err)
			data["ConsoleError"] = "The console's address cannot be read now."
		case info.Console == "":
			data["ConsoleError"] = "This VM has no console."
		default:
			data["Console"] = info.Console
		}
	}
	if v.Role.allows(ActCheckpoint) && placed(v.State) {
		cps, err := h.cfg.Manager.Checkpoints(r.Context(), v.ID)
		if err != nil {
			h.log.Warn("checkpoints of a VM cannot be read", "vm", v.ID, "err", err)
			data["CheckpointsError"] = "The checkpoints cannot be read now."
		}
		data["Checkpoints"] = cps
		data["CanCheckpoint"] = true
		data["NewCheckpoint"] = "cp-" + h.now().UTC().Format("20060102-150405")
	}
	h.render(w, http.StatusOK, "vm.html", s, data)
}

// placed reports whether a VM in state st is on a host and owned by no job.
func placed(st string) bool {
	switch st {
	case "running", "stopped", "paused", "crashed":
		return true
	}
	return false
}

func (h *Handler) act(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok, err := h.find(r.Context(), s, r.PathValue("id"))
	if err != nil {
		h.fail(w, s, http.StatusInternalServerError, "The VM cannot be read now.")
		return
	}
	action := r.PathValue("action")
	if ok && (action == vmm.ActionCheckpoint || action == vmm.ActionRevert || action == vmm.ActionDeleteCheckpoint) &&
		v.Role.allows(ActCheckpoint) && placed(v.State) {
		h.checkpoint(w, r, s, v, action)
		return
	}
	if !ok || !slices.Contains(v.Actions, action) {
		h.log.Warn("action refused", "user", s.who.User, "vm", r.PathValue("id"), "action", action)
		h.fail(w, s, http.StatusNotFound, "There is no such action on a VM of yours.")
		return
	}
	var job store.Job
	m := h.cfg.Manager
	switch action {
	case ActRemove:
		job, err = m.DeleteVM(r.Context(), v.ID, s.who.User)
	case ActStart:
		job, err = m.VMAction(r.Context(), v.ID, vmm.ActionStart, s.who.User)
	case ActStop:
		job, err = m.VMAction(r.Context(), v.ID, vmm.ActionPowerOff, s.who.User)
	case ActShutdown:
		job, err = m.VMAction(r.Context(), v.ID, vmm.ActionShutdown, s.who.User)
	case ActReboot:
		job, err = m.VMAction(r.Context(), v.ID, vmm.ActionReboot, s.who.User)
	case ActPause:
		a := vmm.ActionPause
		if v.State == "paused" {
			a = vmm.ActionResume
		}
		job, err = m.VMAction(r.Context(), v.ID, a, s.who.User)
	}
	if err != nil {
		h.fail(w, s, http.StatusConflict, "The action cannot be taken: "+publicReason(err))
		return
	}
	http.Redirect(w, r, "/jobs/"+job.ID, http.StatusSeeOther)
}

// checkpoint records a checkpoint of v, or reverts v to one, or deletes
// one.
func (h *Handler) checkpoint(w http.ResponseWriter, r *http.Request, s *session, v vmView, action string) {
	name := r.PostFormValue("name")
	m := h.cfg.Manager
	var job store.Job
	var err error
	if action != vmm.ActionCheckpoint {
		// Only one the VM has: a crafted name is refused here, not by a
		// failed job.
		cps, cerr := m.Checkpoints(r.Context(), v.ID)
		if cerr != nil {
			h.fail(w, s, http.StatusServiceUnavailable, "The checkpoints cannot be read now.")
			return
		}
		if !slices.ContainsFunc(cps, func(c hostapi.Checkpoint) bool { return c.Name == name }) {
			h.fail(w, s, http.StatusNotFound, "The VM has no such checkpoint.")
			return
		}
	}
	switch action {
	case vmm.ActionRevert:
		job, err = m.RevertCheckpoint(r.Context(), v.ID, name, s.who.User)
	case vmm.ActionDeleteCheckpoint:
		job, err = m.DeleteCheckpoint(r.Context(), v.ID, name, s.who.User)
	default:
		job, err = m.CreateCheckpoint(r.Context(), v.ID, name, s.who.User, v.Role.MaxCheckpoints)
	}
	if err != nil {
		code, msg := http.StatusConflict, "The action cannot be taken: "+publicReason(err)
		switch {
		case errors.Is(err, store.ErrInvalid):
			code, msg = http.StatusBadRequest, "A checkpoint name is 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'."
		case errors.Is(err, store.ErrExists):
			msg = "The VM has a checkpoint of that name: choose another, or delete that one first."
		case errors.Is(err, store.ErrQuota):
			msg = fmt.Sprintf("The VM has %d checkpoints, the most your role allows: delete one first.", v.Role.MaxCheckpoints)
		}
		h.fail(w, s, code, msg)
		return
	}
	http.Redirect(w, r, "/jobs/"+job.ID, http.StatusSeeOther)
}

// job returns job id if s asked for it.
func (h *Handler) job(ctx context.Context, s *session, id string) (store.Job, bool) {
	j, err := h.cfg.Manager.Job(ctx, id)
	if err != nil || j.User != s.who.User {
		return store.Job{}, false
	}
	return j, true
}

func (h *Handler) jobPage(w http.ResponseWriter, r *http.Request, s *session) {
	j, ok := h.job(r.Context(), s, r.PathValue("id"))
	if !ok {
		h.fail(w, s, http.StatusNotFound, "There is no such job of yours.")
		return
	}
	h.render(w, http.StatusOK, "job.html", s, map[string]any{"Job": jobView(j), "Ended": j.State != store.JobQueued && j.State != store.JobRunning})
}

type jobJSON struct {
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	State    string   `json:"state"`
	Percent  int      `json:"percent"`
	Steps    []string `json:"steps"`
	Error    string   `json:"error,omitempty"`
	VM       string   `json:"vm,omitempty"`
	Finished bool     `json:"finished"`
}

func jobView(j store.Job) jobJSON {
	v := jobJSON{ID: j.ID, Kind: j.Kind, State: string(j.State), Percent: int(j.Progress * 100), Error: j.Error,
		Finished: j.State != store.JobQueued && j.State != store.JobRunning}
	for _, st := range j.Steps {
		v.Steps = append(v.Steps, st.Name+": "+string(st.State))
	}
	var in struct {
		VM   string `json:"vm"`
		VMID string `json:"vm_id"`
	}
	if json.Unmarshal(j.Input, &in) == nil {
		v.VM = in.VM
		if in.VMID != "" {
			v.VM = in.VMID
		}
	}
	return v
}

// jobEvents streams a job's progress as server-sent events until it ends.
func (h *Handler) jobEvents(w http.ResponseWriter, r *http.Request, s *session) {
	if _, ok := h.job(r.Context(), s, r.PathValue("id")); !ok {
		http.Error(w, "no such job", http.StatusNotFound)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Minute)
	defer cancel()
	for j, err := range h.cfg.Manager.Watch(ctx, r.PathValue("id")) {
		if err != nil {
			return
		}
		b, _ := json.Marshal(jobView(j))
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
}

func (h *Handler) rolesPage(w http.ResponseWriter, r *http.Request, s *session) {
	roles := h.rolesOf(s.who)
	admin := Role{Users: h.cfg.AdminUsers, Groups: h.cfg.AdminGroups}
	if admin.has(s.who) {
		roles = h.roles
	}
	h.render(w, http.StatusOK, "roles.html", s, map[string]any{"Roles": roles})
}

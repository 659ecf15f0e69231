package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor/sandbox"
	"fulfiller/internal/mail"
	"fulfiller/internal/mail/mailcatcher"
	"fulfiller/internal/stripeapi/stripefake"
)

// Local development defaults. The webhook secret is printed on purpose: it
// only ever signs events on this machine, and every other command refuses
// it.
const (
	devWebhookSecret = config.PublicDevWebhookSecret
	devListenAddr    = "127.0.0.1:8080"
	devStripeKey     = config.DevStripeAPIKey
	devLuarmorKey    = config.DevLuarmorAPIKey
	devLuarmorAddr   = "127.0.0.1:8091"
	devStripeAddr    = "127.0.0.1:8092"
	devMailAddr      = "127.0.0.1:8093"
	devMailFrom      = "Dev shop <keys@localhost>"
	devCatalog       = "catalog.example.yaml"
	// devMailKeep is how many emails the mailbox holds, in memory.
	devMailKeep = 200
)

// cmdDev runs the service on local defaults: the Luarmor sandbox unless
// LUARMOR_API_KEY is set, a Stripe stand-in unless STRIPE_API_KEY is set,
// a mailbox that catches the service's emails unless SMTP_URL is set, and
// migrations applied first.
func cmdDev(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: fulfiller dev (run it through `make run`, which starts PostgreSQL)")
		return errUsage
	}
	env := map[string]string{}
	get := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return getenv(k)
	}
	if get("DATABASE_URL") == "" {
		return &config.Error{Name: "DATABASE_URL", Reason: "is required: `make run` starts a local PostgreSQL and sets it"}
	}

	if err := refuseRealKeysWithThePublicSecret(get); err != nil {
		return err
	}

	if err := refuseMailboxOffLoopback(get); err != nil {
		return err
	}
	if err := refusePortClashes(get); err != nil {
		return err
	}

	applyDevDefaults(env, get)
	// The stand-ins know the catalog's projects and prices, as the real
	// services would, so that doctor's checks of them are real checks.
	cat, err := catalog.Load(orDefault(get("CATALOG_FILE"), "catalog.yaml"))
	if err != nil {
		return err
	}
	luarmorNote := "real Luarmor API (" + orDefault(get("LUARMOR_BASE_URL"), "https://api.luarmor.net") + ")"
	if get("LUARMOR_API_KEY") == "" {
		l, err := net.Listen("tcp", orDefault(get("DEV_LUARMOR_ADDR"), devLuarmorAddr))
		if err != nil {
			return fmt.Errorf("starting the Luarmor sandbox (set DEV_LUARMOR_ADDR to another port): %w", err)
		}
		sb := sandbox.New(sandbox.Options{APIKey: devLuarmorKey, Projects: catalogProjects(cat)})
		go func() { _ = serveUntilDone(ctx, l, sb) }()
		env["LUARMOR_API_KEY"] = devLuarmorKey
		env["LUARMOR_BASE_URL"] = "http://" + l.Addr().String()
		luarmorNote = "Luarmor sandbox on " + env["LUARMOR_BASE_URL"] + " (60 requests/minute, like the real API)"
	}
	stripeNote := "real Stripe API"
	var fake *stripefake.Fake
	if get("STRIPE_API_KEY") == "" {
		l, err := net.Listen("tcp", orDefault(get("DEV_STRIPE_ADDR"), devStripeAddr))
		if err != nil {
			return fmt.Errorf("starting the Stripe stand-in (set DEV_STRIPE_ADDR to another port): %w", err)
		}
		fake = stripefake.New(devStripeKey)
		putCatalogPrices(fake, cat)
		go func() { _ = serveUntilDone(ctx, l, fake) }()
		env["STRIPE_API_KEY"] = devStripeKey
		env["STRIPE_API_BASE"] = "http://" + l.Addr().String()
		stripeNote = "Stripe stand-in on " + env["STRIPE_API_BASE"]
	}
	mailbox := ""
	if get("SMTP_URL") == "" {
		var err error
		if mailbox, err = startMailbox(ctx, get("DEV_MAIL_ADDR"), env, get, logger); err != nil {
			return err
		}
	}
	discordNote, err := startDevDiscord(ctx, get, env)
	if err != nil {
		return err
	}
	cfg, err := config.FromEnvAcceptingDevSecret(get)
	if err != nil {
		return err
	}
	if base := devPublicBaseURL(cfg); fake != nil && base != "" {
		// The webhook endpoint Stripe would send this service's events
		// to, as doctor looks for it.
		fake.PutWebhookEndpoint(stripefake.WebhookEndpoint{URL: base + doctor.WebhookPath,
			APIVersion: stripefake.APIVersion, EnabledEvents: jobs.HandledTypes()})
	}
	fmt.Fprintf(stdout, `
fulfiller (local development)
  service          http://%s
  order page       http://%s/orders/{checkout_session_id}   (cs_... as simulate prints it)
  internal         %s
  luarmor          %s
  stripe api       %s
  mail             %s
  discord          %s
  catalog          %s
  webhook secret   %s   (development only)

%s
%s`, browsable(cfg.ListenAddr), browsable(cfg.ListenAddr), internalNote(cfg), luarmorNote, stripeNote, mailNote(mailbox, cfg), discordNote, cfg.CatalogFile,
		secretNote(get("STRIPE_WEBHOOK_SECRET"), env), doctorNote(cfg), tryNote(cfg, env))
	return serve(ctx, cfg, true, logger)
}

// devListener is one address dev binds: the setting that names it, its
// value, and whether the value is dev's default rather than set.
type devListener struct {
	setting, what, addr string
	isDefault           bool
}

// devListeners lists the addresses dev is about to bind, as get and the
// development defaults name them.
func devListeners(get func(string) string) []devListener {
	setting := func(name, what, def string) devListener {
		if v := get(name); v != "" {
			return devListener{setting: name, what: what, addr: v}
		}
		return devListener{setting: name, what: what, addr: def, isDefault: true}
	}
	ls := []devListener{setting("LISTEN_ADDR", "the service", devListenAddr)}
	admin := setting("ADMIN_ADDR", "the internal listener", config.DefaultAdminAddr)
	if admin.isDefault && get("METRICS_ADDR") != "" {
		admin = devListener{setting: "METRICS_ADDR", what: "the internal listener", addr: get("METRICS_ADDR")}
	}
	if admin.addr != "off" {
		ls = append(ls, admin)
	}
	if get("LUARMOR_API_KEY") == "" {
		ls = append(ls, setting("DEV_LUARMOR_ADDR", "the Luarmor sandbox", devLuarmorAddr))
	}
	if get("STRIPE_API_KEY") == "" {
		ls = append(ls, setting("DEV_STRIPE_ADDR", "the Stripe stand-in", devStripeAddr))
	}
	if get("SMTP_URL") == "" {
		ls = append(ls, setting("DEV_MAIL_ADDR", "the mailbox", devMailAddr))
	}
	return ls
}

// refusePortClashes stops dev, before it binds anything, when two of its
// listeners share a port: otherwise the second bind fails with "address
// already in use" and nothing says which of dev's own listeners took it.
func refusePortClashes(get func(string) string) error {
	ls := devListeners(get)
	used := map[int]bool{}
	for _, l := range ls {
		if _, p, err := net.SplitHostPort(l.addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				used[n] = true
			}
		}
	}
	for i, a := range ls {
		_, pa, err := net.SplitHostPort(a.addr)
		if err != nil || pa == "0" {
			continue
		}
		for _, b := range ls[i+1:] {
			if _, pb, err := net.SplitHostPort(b.addr); err != nil || pb != pa {
				continue
			}
			// Suggest moving the one left at its default, else the later one.
			move := b
			if a.isDefault && !b.isDefault {
				move = a
			}
			host, _, _ := net.SplitHostPort(move.addr)
			free := 8094
			for used[free] {
				free++
			}
			return &config.Error{Name: a.setting, Reason: fmt.Sprintf(
				"(%s, %s) and %s (%s, %s) use the same port %s: set one of them to a free port, for example %s=%s",
				describe(a), a.what, b.setting, describe(b), b.what, pa, move.setting, net.JoinHostPort(host, strconv.Itoa(free)))}
		}
	}
	return nil
}

func describe(l devListener) string {
	if l.isDefault {
		return l.addr + " by default"
	}
	return l.addr
}

// refuseMailboxOffLoopback keeps the mailbox on this machine: it shows
// license keys and find-my-keys links to whoever reaches it.
func refuseMailboxOffLoopback(get func(string) string) error {
	addr := get("DEV_MAIL_ADDR")
	if addr == "" || get("SMTP_URL") != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return &config.Error{Name: "DEV_MAIL_ADDR", Reason: fmt.Sprintf("(%s) is not host:port; expected for example %s", addr, devMailAddr)}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return &config.Error{Name: "DEV_MAIL_ADDR", Reason: fmt.Sprintf(
			"(%s) must be a loopback address such as %s or [::1]:8093: the mailbox shows license keys and find-my-keys links to whoever reaches it", addr, devMailAddr)}
	}
	return nil
}

// startMailbox starts the mailbox: its SMTP server on a free loopback port
// (only this process sends to it) and its pages on addr (DEV_MAIL_ADDR, or
// the default). It points the service's mail settings at it in env:
// SMTP_URL always, MAIL_FROM and PUBLIC_BASE_URL where get lacks them. It
// returns the pages' address.
func startMailbox(ctx context.Context, addr string, env map[string]string, get func(string) string, logger *slog.Logger) (string, error) {
	catcher := mailcatcher.New(devMailKeep, logger)
	smtpListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("starting the mailbox's SMTP server on 127.0.0.1 (is the loopback interface up?): %w", err)
	}
	page, err := net.Listen("tcp", orDefault(addr, devMailAddr))
	if err != nil {
		_ = smtpListener.Close()
		return "", fmt.Errorf("starting the mailbox (set DEV_MAIL_ADDR to another port): %w", err)
	}
	go func() {
		if err := catcher.ServeSMTP(ctx, smtpListener); err != nil {
			logger.Error("the mailbox stopped taking mail", "error", err)
		}
	}()
	go func() { _ = serveUntilDone(ctx, page, catcher) }()
	env["SMTP_URL"] = "smtp://" + smtpListener.Addr().String()
	if get("MAIL_FROM") == "" {
		env["MAIL_FROM"] = devMailFrom
	}
	if get("PUBLIC_BASE_URL") == "" {
		env["PUBLIC_BASE_URL"] = "http://" + loopbackBrowsable(get("LISTEN_ADDR"))
	}
	return page.Addr().String(), nil
}

// mailNote says where the service's emails go: the mailbox's page at
// mailbox, or, with none, the server SMTP_URL names.
func mailNote(mailbox string, cfg config.Config) string {
	if mailbox == "" {
		return "sent through " + cfg.Mail.SMTP.String() + " (SMTP_URL)"
	}
	return "http://" + browsable(mailbox) + "   (the mailbox: every email the service sends, the newest " + strconv.Itoa(devMailKeep) + ")"
}

// loopbackBrowsable is addr as a browser on this machine reaches it, on
// localhost when addr names another interface: the emails' links must be
// http://localhost or a loopback address (PUBLIC_BASE_URL's rule for http).
func loopbackBrowsable(addr string) string {
	hostport := browsable(addr)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return net.JoinHostPort("localhost", port)
	}
	return hostport
}

// Where simulate sends its requests when given no flags (and no
// LISTEN_ADDR or STRIPE_API_BASE in its environment).
const (
	simulateDefaultURL    = "http://localhost:8080"
	simulateDefaultStripe = "http://" + devStripeAddr
)

// tryNote is the banner's simulate command for the addresses in use: the
// --url, --stripe and --secret flags appear when another terminal's
// simulate would not find them by default.
func tryNote(cfg config.Config, env map[string]string) string {
	stripeBase, ok := env["STRIPE_API_BASE"]
	if !ok {
		return "simulate needs the Stripe stand-in: it runs when STRIPE_API_KEY is unset.\n"
	}
	cmd := "go run ./cmd/fulfiller simulate checkout --price price_dev_monthly --quantity 2"
	if url := "http://" + browsable(cfg.ListenAddr); url != simulateDefaultURL && url != "http://"+devListenAddr {
		cmd += " --url " + url
	}
	if stripeBase != simulateDefaultStripe {
		cmd += " --stripe " + stripeBase
	}
	if len(cfg.WebhookSecrets) > 0 && cfg.WebhookSecrets[0] != devWebhookSecret {
		cmd += ` --secret "$STRIPE_WEBHOOK_SECRET"`
	}
	return "Try a purchase from another terminal:\n  " + cmd + "\n"
}

// internalNote names the internal listener and what opens its admin API.
func internalNote(cfg config.Config) string {
	if cfg.AdminAddr == "" {
		return "off (ADMIN_ADDR=off)"
	}
	note := "http://" + browsable(cfg.AdminAddr) + "  (/metrics, /readyz"
	if cfg.AdminUser != "" || cfg.AdminAPIToken != "" {
		note += ", /v1/admin/, /riverui/"
	} else {
		note += "; set ADMIN_USER and ADMIN_PASSWORD for /riverui/ and /v1/admin/"
	}
	return note + ")"
}

// devShop is the shop `make run` shows on its pages and in its emails.
var devShop = map[string]string{"SHOP_NAME": "Dev Shop", "SHOP_URL": "https://example.com",
	"SHOP_SUPPORT": "support@example.com", "SHOP_ACCENT_COLOR": "#6d28d9"}

// applyDevDefaults fills in, in env, the development settings get lacks.
func applyDevDefaults(env map[string]string, get func(string) string) {
	for name, v := range devShop {
		if get(name) == "" {
			env[name] = v
		}
	}
	if get("STRIPE_WEBHOOK_SECRET") == "" {
		env["STRIPE_WEBHOOK_SECRET"] = devWebhookSecret
	}
	// Only this machine reaches a development service unless LISTEN_ADDR
	// says otherwise: its webhook secret is public.
	if get("LISTEN_ADDR") == "" {
		env["LISTEN_ADDR"] = devListenAddr
	}
	if get("CATALOG_FILE") == "" {
		if _, err := os.Stat("catalog.yaml"); err != nil {
			env["CATALOG_FILE"] = devCatalog
		}
	}
}

// refuseRealKeysWithThePublicSecret stops dev from accepting events signed
// with the repository's public secret while it holds a real Stripe or
// Luarmor key: anyone could then sign an event that creates real keys.
// It runs before the stand-ins fill in their own keys.
func refuseRealKeysWithThePublicSecret(get func(string) string) error {
	if secret := get("STRIPE_WEBHOOK_SECRET"); secret != "" && secret != devWebhookSecret {
		return nil
	}
	if k := get("STRIPE_API_KEY"); k != "" && k != devStripeKey {
		return &config.Error{Name: "STRIPE_WEBHOOK_SECRET", Reason: "must be set to the webhook endpoint's own secret (for example the one `stripe listen` prints) when STRIPE_API_KEY is a real key: the development secret is public"}
	}
	if k := get("LUARMOR_API_KEY"); k != "" && k != devLuarmorKey {
		return &config.Error{Name: "STRIPE_WEBHOOK_SECRET", Reason: "must be set to the webhook endpoint's own secret when LUARMOR_API_KEY is a real key: the development secret is public, and anyone could sign an event that creates real keys"}
	}
	return nil
}

func secretNote(configured string, env map[string]string) string {
	if configured == devWebhookSecret && env["STRIPE_WEBHOOK_SECRET"] == devWebhookSecret {
		return devWebhookSecret
	}
	return "(from STRIPE_WEBHOOK_SECRET, not shown)"
}

// browsable is addr as a browser on this machine reaches it.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return ":" + port
}

// catalogProjects are the Luarmor projects the catalog sells, each once:
// the sandbox holds these, as the shop's Luarmor account would.
func catalogProjects(cat *catalog.Catalog) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(cat.Prices)) {
		p, _ := cat.Lookup(id)
		if !slices.Contains(out, p.ProjectID) {
			out = append(out, p.ProjectID)
		}
	}
	return out
}

// putCatalogPrices registers the catalog's prices with the Stripe
// stand-in, active, as the shop's Stripe account would hold them: a
// recurring one (billing: recurring) billed monthly, the others one-off.
func putCatalogPrices(fake *stripefake.Fake, cat *catalog.Catalog) {
	for id, p := range cat.Prices {
		price := stripefake.Price{ID: id, Active: true}
		if p.Billing == catalog.BillingRecurring {
			price.Interval = "month"
		}
		fake.PutPrice(price)
	}
}

// devPublicBaseURL is where the development service is reached, as doctor
// takes PUBLIC_BASE_URL: the one mail links to (the mailbox sets it to the
// service's own address), else PUBLIC_BASE_URL or the service's address;
// "" when none is a fixed address doctor accepts (port 0, plain http to
// another machine).
func devPublicBaseURL(cfg config.Config) string {
	raw := cfg.Mail.PublicBaseURL
	if raw == "" {
		raw = "http://" + loopbackBrowsable(cfg.ListenAddr)
	}
	base, err := mail.ParsePublicBaseURL(raw)
	if err != nil {
		return ""
	}
	if u, err := url.Parse(base); err != nil || u.Port() == "0" {
		return ""
	}
	return base
}

// doctorNote is the banner's doctor command: the settings doctor needs to
// check this development service, against the same stand-ins, from
// another terminal. A secret the stand-ins did not make up (a real key,
// the database's password) is not printed: the command names its
// variable instead, for that terminal to set.
func doctorNote(cfg config.Config) string {
	type setting struct{ name, value string }
	ref := func(name string) string { return `"$` + name + `"` }
	var ss []setting
	add := func(name, value string) { ss = append(ss, setting{name, value}) }

	if pc, err := pgxpool.ParseConfig(cfg.DatabaseURL); err == nil && pc.ConnConfig.Password == "" {
		add("DATABASE_URL", shellQuote(cfg.DatabaseURL))
	} else {
		add("DATABASE_URL", ref("DATABASE_URL"))
	}
	if cfg.StripeAPIKey == devStripeKey {
		add("STRIPE_API_KEY", devStripeKey)
	} else {
		add("STRIPE_API_KEY", ref("STRIPE_API_KEY"))
	}
	if cfg.StripeAPIBase != "" {
		add("STRIPE_API_BASE", shellQuote(cfg.StripeAPIBase))
	}
	if slices.Equal(cfg.WebhookSecrets, []string{devWebhookSecret}) {
		add("STRIPE_WEBHOOK_SECRET", devWebhookSecret)
	} else {
		add("STRIPE_WEBHOOK_SECRET", ref("STRIPE_WEBHOOK_SECRET"))
	}
	if cfg.LuarmorAPIKey == devLuarmorKey {
		add("LUARMOR_API_KEY", devLuarmorKey)
	} else {
		add("LUARMOR_API_KEY", ref("LUARMOR_API_KEY"))
	}
	add("LUARMOR_BASE_URL", shellQuote(cfg.LuarmorBaseURL))
	catalogFile := cfg.CatalogFile
	if abs, err := filepath.Abs(catalogFile); err == nil {
		catalogFile = abs
	}
	add("CATALOG_FILE", shellQuote(catalogFile))
	if base := devPublicBaseURL(cfg); base != "" {
		add("PUBLIC_BASE_URL", shellQuote(base))
	}

	var b strings.Builder
	b.WriteString("Check this run as before a sale, from another terminal (doctor; it says which services are the local stand-ins):\n")
	for _, s := range ss {
		b.WriteString("  " + s.name + "=" + s.value + " \\\n")
	}
	b.WriteString("  go run ./cmd/fulfiller doctor\n")
	return b.String()
}

// shellQuote is v as one word of a POSIX shell: as it is when it holds
// nothing the shell reads, else in single quotes.
func shellQuote(v string) string {
	if v != "" && strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:@%+=,-", r))
	}) < 0 {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

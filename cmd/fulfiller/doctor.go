package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/budget"
	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/mail"
	"fulfiller/internal/postgres"
	"fulfiller/internal/stripeapi"
)

// errDoctorFailed makes the command exit 1 once every line is printed.
var errDoctorFailed = fmt.Errorf("doctor: at least one check failed; fix what the FAIL lines say and run it again")

// doctorTimeout bounds the whole run: each check is one call.
const doctorTimeout = 2 * time.Minute

// cmdDoctor checks, with the settings of serve, that this configuration
// can sell, one line per check: every setting at fault is one, and the
// checks that do not need it run all the same.
func cmdDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: fulfiller doctor (reads the settings of serve, and PUBLIC_BASE_URL)")
		return errUsage
	}
	// Every setting at fault is a FAIL line, the development secret too,
	// and the checks that do not need them still run.
	cfg, err := config.FromEnvAcceptingDevSecret(getenv)
	var bad config.Errors
	if err != nil && !errors.As(err, &bad) {
		return err
	}
	publicBase := ""
	if raw := strings.TrimSpace(getenv("PUBLIC_BASE_URL")); raw != "" {
		if publicBase, err = mail.ParsePublicBaseURL(raw); err != nil {
			publicBase = ""
			if !bad.Has("PUBLIC_BASE_URL") {
				bad = append(bad, &config.Error{Name: "PUBLIC_BASE_URL", Reason: err.Error()})
			}
		}
	}
	cat, catErr := catalog.Load(cfg.CatalogFile)
	var pool *pgxpool.Pool
	if !bad.Has("DATABASE_URL") {
		if pool, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
			bad = append(bad, &config.Error{Name: "DATABASE_URL", Reason: "is not a valid PostgreSQL connection string"})
		} else {
			defer pool.Close()
		}
	}
	httpClient := &http.Client{Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	d := &doctor.Doctor{
		Pool:           pool,
		Stripe:         stripeapi.New(cfg.StripeAPIKey, cfg.StripeAPIBase, httpClient),
		Luarmor:        doctorLuarmor(ctx, &cfg, pool, httpClient),
		Catalog:        cat,
		CatalogErr:     catErr,
		Settings:       bad,
		StandIns:       doctor.FindStandIns(ctx, httpClient, cfg),
		StripeLive:     jobs.LiveKey(cfg.StripeAPIKey),
		StripeKeyKnown: doctor.StripeKeyNamesMode(cfg.StripeAPIKey),
		WebhookSecrets: cfg.WebhookSecrets,
		PublicBaseURL:  publicBase,
		HTTP:           httpClient,
		Shop:           cfg.Shop,
		Retention:      cfg.Retention,
		Outbound:       cfg.Outbound,
	}
	results := d.Run(ctx)
	for _, r := range results {
		fmt.Fprintln(stdout, r)
	}
	if doctor.Failed(results) {
		return errDoctorFailed
	}
	return nil
}

// doctorBudgetWait bounds the wait for a slot of the fleet's budget: a
// fleet busy for that long is reported as such, within doctorTimeout.
const doctorBudgetWait = time.Minute

// doctorLuarmor is the client of doctor's Luarmor reads. With the
// service's database reachable and its schema current, each read takes a
// slot of the fleet's budget (class maintenance, behind every delivery,
// renewal and revocation) like any Luarmor call the service makes, so
// running doctor beside a busy fleet never pushes it past Luarmor's
// limit. Without it there is no fleet to share with: the reads go
// straight to Luarmor, three of them, one free (/status), once.
func doctorLuarmor(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, httpClient *http.Client) doctor.Luarmor {
	direct := luarmor.NewClient(cfg.LuarmorAPIKey, luarmor.WithBaseURL(cfg.LuarmorBaseURL), luarmor.WithHTTPClient(httpClient))
	if pool == nil {
		return direct
	}
	if pending, err := postgres.PendingMigrations(ctx, pool); err != nil || len(pending) > 0 {
		return direct
	}
	host, _ := os.Hostname()
	b := budget.New(pool, budget.Config{
		Count: cfg.LuarmorRateLimit, Window: cfg.LuarmorRateWindow, MaxWait: doctorBudgetWait,
		Replica: fmt.Sprintf("doctor-%s-%d", host, os.Getpid()), Logger: slog.New(slog.DiscardHandler),
	})
	go b.Run(ctx)
	return &budget.Client{Budget: b, Luarmor: direct}
}

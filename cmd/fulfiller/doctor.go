package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/catalog"
	"fulfiller/internal/config"
	"fulfiller/internal/doctor"
	"fulfiller/internal/jobs"
	"fulfiller/internal/luarmor"
	"fulfiller/internal/mail"
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
		Pool:   pool,
		Stripe: stripeapi.New(cfg.StripeAPIKey, cfg.StripeAPIBase, httpClient),
		// Straight to Luarmor, outside the fleet's budget: three calls,
		// one of them free, once.
		Luarmor:        luarmor.NewClient(cfg.LuarmorAPIKey, luarmor.WithBaseURL(cfg.LuarmorBaseURL), luarmor.WithHTTPClient(httpClient)),
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

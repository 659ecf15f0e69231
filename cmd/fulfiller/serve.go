package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"fulfiller/internal/app"
	"fulfiller/internal/config"
	"fulfiller/internal/postgres"
)

func cmdServe(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	migrate := fs.Bool("migrate", false, "apply migrations before serving")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, *migrate, logger)
}

func serve(ctx context.Context, cfg config.Config, migrate bool, logger *slog.Logger) error {
	m := &app.Main{Config: cfg, Logger: logger, Migrate: migrate}
	if err := m.Run(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	return m.Close()
}

func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, logger *slog.Logger, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: fulfiller migrate (reads DATABASE_URL)")
		return errUsage
	}
	url := getenv("DATABASE_URL")
	if url == "" {
		return &config.Error{Name: "DATABASE_URL", Reason: "is required (postgres://user:password@host:5432/dbname)"} //nolint:gosec // G101: an example URL in the help text
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return &config.Error{Name: "DATABASE_URL", Reason: "is not a valid PostgreSQL connection string"}
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool, logger); err != nil {
		return err
	}
	logger.Info("database schema is up to date")
	return nil
}

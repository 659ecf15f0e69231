// Package migrations holds the service's SQL schema, applied in file-name
// order by `fulfiller migrate` (see internal/postgres.Migrate).
package migrations

import "embed"

// FS holds every migration, named NNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS

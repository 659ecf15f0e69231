package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor/sandbox"
)

// Only the big order's creates that reached Luarmor after the small
// order's webhook and before the small order's own create count as going
// first; look-ups, earlier creates and later ones do not.
func TestCreatesAheadCountsOnlyTheBigOrdersCreatesInBetween(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	create := func(s int, sessionID string) sandbox.Call {
		return sandbox.Call{Time: at(s), Method: http.MethodPost, Path: "/v3/projects/p1/users",
			Body: []byte(`{"note":"` + sessionID + ` buyer@example.com ref:fk_0123"}`), Status: http.StatusOK}
	}
	calls := []sandbox.Call{
		create(1, "cs_big"), // before the small order's webhook
		create(3, "cs_big"),
		{Time: at(4), Method: http.MethodGet, Path: "/v3/projects/p1/users", Query: "search=cs_big", Status: http.StatusOK},
		create(5, "cs_other"),
		create(6, "cs_big"),
		create(7, "cs_small"),
		create(8, "cs_big"), // after the small order's create
	}
	require.Equal(t, 2, createsAhead(calls, at(2), "cs_big", "cs_small"))
	require.Equal(t, 0, createsAhead(calls, at(2), "cs_big", "cs_never_created"),
		"a small order with no create yet has nothing ahead of it to count")
}

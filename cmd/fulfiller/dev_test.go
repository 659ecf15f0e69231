package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
)

func TestDevRefusesTwoOfItsListenersOnOnePortBeforeBindingEither(t *testing.T) {
	t.Parallel()
	// Something already holds the port: a check after binding would fail
	// with "address already in use" instead of naming the two settings.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { require.NoError(t, held.Close()) }()
	addr := held.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	for name, tc := range map[string]struct {
		env        map[string]string
		both, move string
	}{
		"service on the sandbox's default port": {
			env:  map[string]string{"LISTEN_ADDR": "127.0.0.1:8091"},
			both: "LISTEN_ADDR (127.0.0.1:8091, the service) and DEV_LUARMOR_ADDR (127.0.0.1:8091 by default, the Luarmor sandbox) use the same port 8091",
			move: "for example DEV_LUARMOR_ADDR=127.0.0.1:8093",
		},
		"service and sandbox set to one port": {
			env:  map[string]string{"LISTEN_ADDR": addr, "DEV_LUARMOR_ADDR": addr},
			both: fmt.Sprintf("LISTEN_ADDR (%s, the service) and DEV_LUARMOR_ADDR (%s, the Luarmor sandbox) use the same port %s", addr, addr, port),
			move: "for example DEV_LUARMOR_ADDR=127.0.0.1:8093",
		},
		"internal listener on the Stripe stand-in's default port": {
			env:  map[string]string{"ADMIN_ADDR": "127.0.0.1:8092"},
			both: "ADMIN_ADDR (127.0.0.1:8092, the internal listener) and DEV_STRIPE_ADDR (127.0.0.1:8092 by default, the Stripe stand-in) use the same port 8092",
			move: "for example DEV_STRIPE_ADDR=127.0.0.1:8093",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.env["DATABASE_URL"] = "postgres://u@127.0.0.1:1/db"
			err := run(context.Background(), []string{"dev"}, envOf(tc.env), io.Discard, io.Discard)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.ErrorContains(t, err, tc.both)
			require.ErrorContains(t, err, tc.move)
			require.NotContains(t, err.Error(), "address already in use")
		})
	}
}

func TestDevPortCheckCountsOnlyTheListenersItStarts(t *testing.T) {
	t.Parallel()
	// A real Luarmor key starts no sandbox; ADMIN_ADDR=off no internal
	// listener; port 0 is any free port.
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:8091", "LUARMOR_API_KEY": "real-luarmor-key"})))
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:9090", "ADMIN_ADDR": "off"})))
	require.NoError(t, refusePortClashes(envOf(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0", "DEV_LUARMOR_ADDR": "127.0.0.1:0", "DEV_STRIPE_ADDR": "127.0.0.1:0"})))
	require.NoError(t, refusePortClashes(envOf(nil)), "the defaults do not clash")
}

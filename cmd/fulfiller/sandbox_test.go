package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/luarmor"
)

func TestLuarmorSandboxCommandServesTheAPIWithItsBudget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"luarmor-sandbox", "--addr", "127.0.0.1:0", "--api-key", "cli-key", "--limit", "2/1m"},
			envOf(nil), w, io.Discard)
		_ = w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, out) }()
	base := strings.Fields(strings.TrimPrefix(line, "Luarmor sandbox on "))[0]

	c := luarmor.NewClient("cli-key", luarmor.WithBaseURL(base))
	for i := 0; i < 2; i++ {
		_, err := c.CreateUser(ctx, "any_project", luarmor.CreateUserRequest{})
		require.NoError(t, err)
	}
	_, err = c.CreateUser(ctx, "any_project", luarmor.CreateUserRequest{})
	var rl *luarmor.RateLimitError
	require.ErrorAs(t, err, &rl, "the third request in a minute exceeds --limit 2/1m")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
	_, err = http.Get(base + "/status")
	require.Error(t, err, "the sandbox no longer listens")
}

package main

import (
	"fmt"
	"io"
	"net"
	"strings"
)

func printDevBanner(w io.Writer, addr string) {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, `
tokend is running in development mode at %[1]s
  store: embedded, in memory (everything is lost when it stops)
  keys:  ephemeral (tokens die with the process)

Seeded: user %[2]q (password %[3]q, role admin) and public client %[4]q.

Get a token:
  curl -s %[1]s/oauth/token -d grant_type=password -d client_id=%[4]s -d username=%[2]s -d password=%[3]s

Refresh it (use the refresh_token from the answer):
  curl -s %[1]s/oauth/token -d grant_type=refresh_token -d client_id=%[4]s -d refresh_token=rt_...

To create your own users and clients with the CLI, run tokend on Redis
(REDIS_URL=redis://127.0.0.1:6379/0); see README.md.
%[5]s
`, base, devUser, devPassword, devClient, strings.Repeat("-", 72))
}

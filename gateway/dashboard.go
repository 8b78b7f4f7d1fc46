package gateway

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the live dashboard: plain HTML and JS in the binary, no
// external downloads. It polls the status API and /metrics.
//
//go:embed web/dashboard.html
var dashboardHTML []byte

func handleDashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(dashboardHTML)
}

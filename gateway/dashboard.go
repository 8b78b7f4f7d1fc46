package gateway

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the live dashboard: plain HTML and JS in the binary, no
// external downloads. It draws PathSeries with the vendored Chart.js and
// lists PathTimeline.
//
//go:embed web/dashboard.html
var dashboardHTML []byte

// chartJS is Chart.js (MIT, web/vendor/chart.js.LICENSE), vendored from
// Debian's libjs-chart.js so that the build needs no package and the page
// no network.
//
//go:embed web/vendor/chart.min.js
var chartJS []byte

//go:embed web/vendor/chart.js.LICENSE
var chartLicense []byte

func handleDashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(dashboardHTML)
}

func handleChartJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=86400")
	w.Write(chartJS)
}

func handleChartLicense(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(chartLicense)
}

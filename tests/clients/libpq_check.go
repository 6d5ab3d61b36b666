// Go lib/pq against PrivacyLens: what Grafana's PostgreSQL data source does.
// Run (offline, Debian's golang-github-lib-pq-dev): GO111MODULE=off GOPATH=/usr/share/gocode go run libpq_check.go <port>
// Prints one "ok <check>" line per passing check; exits 1 on the first failure.
package main

import (
	"database/sql"
	"fmt"
	"os"

	"github.com/lib/pq"
)

func check(ok bool, what string) {
	if !ok {
		fmt.Println("FAIL " + what)
		os.Exit(1)
	}
	fmt.Println("ok " + what)
}

func main() {
	db, err := sql.Open("postgres", "host=127.0.0.1 port="+os.Args[1]+" user=analyst password=demo dbname=demo sslmode=disable")
	check(err == nil, "open")
	defer db.Close()
	check(db.Ping() == nil, "ping")

	var version string
	check(db.QueryRow("SELECT version()").Scan(&version) == nil, "version() "+version)

	// Grafana's time-series panels group by a time bucket; here a public column stands in for it.
	rows, err := db.Query("SELECT department AS metric, COUNT(*) AS value FROM employees WHERE hire_date BETWEEN $1 AND $2 GROUP BY department ORDER BY 1", "2010-01-01", "2020-12-31")
	check(err == nil, fmt.Sprintf("time-filtered aggregate %v", err))
	n := 0
	for rows.Next() {
		var metric string
		var value, low, high sql.NullInt64
		var suppressed bool
		check(rows.Scan(&metric, &value, &low, &high, &suppressed) == nil, "scan "+metric)
		if !suppressed {
			check(low.Int64 <= value.Int64 && value.Int64 <= high.Int64, "interval "+metric)
		}
		n++
	}
	check(rows.Err() == nil && n == 10, fmt.Sprintf("rows %d", n))

	var count int64
	var lo, hi int64
	var suppressed bool
	err = db.QueryRow("SELECT COUNT(*) FROM employees WHERE department = $1", "Sales").Scan(&count, &lo, &hi, &suppressed)
	check(err == nil && lo <= count && count <= hi, "$1 parameter")

	_, err = db.Query("SELECT * FROM employees")
	pqErr, isPq := err.(*pq.Error)
	check(isPq && pqErr.Code == "0A000", fmt.Sprintf("refusal %v", err))
	check(db.QueryRow("SELECT 1").Scan(&count) == nil && count == 1, "usable after refusal")
	fmt.Println("all checks passed")
}

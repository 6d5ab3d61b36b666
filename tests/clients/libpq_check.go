// Go lib/pq against PrivacyLens: what Grafana's PostgreSQL data source does.
// Run (offline, Debian's golang-github-lib-pq-dev): GO111MODULE=off GOPATH=/usr/share/gocode go run libpq_check.go <port> [sslmode]
// Prints one "ok <check>" line per passing check; exits 1 on the first failure.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"time"

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
	sslmode := "disable"
	if len(os.Args) > 2 {
		sslmode = os.Args[2]
	}
	db, err := sql.Open("postgres", "host=127.0.0.1 port="+os.Args[1]+" user=analyst password=demo dbname=demo sslmode="+sslmode)
	check(err == nil, "open")
	defer db.Close()
	check(db.Ping() == nil, "ping")

	var version string
	check(db.QueryRow("SELECT version()").Scan(&version) == nil, "version() "+version)

	// A Grafana time-series panel: time buckets, $__timeFilter expanded to an ISO-timestamp BETWEEN.
	rows, err := db.Query(`SELECT date_trunc('month', hire_date) AS "time", COUNT(*) AS value FROM employees
		WHERE hire_date BETWEEN '2019-01-01T00:00:00Z' AND '2019-12-31T23:59:59Z' GROUP BY 1 ORDER BY 1`)
	check(err == nil, fmt.Sprintf("time-bucketed aggregate %v", err))
	n := 0
	var previous time.Time
	for rows.Next() {
		var bucket time.Time
		var value, low, high sql.NullInt64
		var suppressed bool
		check(rows.Scan(&bucket, &value, &low, &high, &suppressed) == nil, "scan "+bucket.String())
		check(bucket.Year() == 2019 && bucket.Day() == 1 && bucket.After(previous), "bucket "+bucket.Format("2006-01"))
		if !suppressed {
			check(low.Int64 <= value.Int64 && value.Int64 <= high.Int64, "interval "+bucket.Format("2006-01"))
		}
		previous = bucket
		n++
	}
	check(rows.Err() == nil && n == 12, fmt.Sprintf("12 monthly buckets, got %d", n))

	rows, err = db.Query("SELECT department AS metric, COUNT(*) AS value FROM employees WHERE hire_date BETWEEN $1 AND $2 GROUP BY department ORDER BY 1", "2010-01-01", "2020-12-31")
	check(err == nil, fmt.Sprintf("$1/$2 parameters %v", err))
	n = 0
	for rows.Next() {
		n++
	}
	check(rows.Err() == nil && n == 10, fmt.Sprintf("10 departments, got %d", n))

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

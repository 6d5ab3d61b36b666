// node-postgres against PrivacyLens. Run: node check.js <port> [tls]
// Prints one "ok <check>" line per passing check; exits 1 on the first failure.
const { Client } = require("pg");

function check(ok, what) {
  if (!ok) { console.log("FAIL " + what); process.exit(1); }
  console.log("ok " + what);
}

async function main() {
  const tls = process.argv[3] === "tls";
  const client = new Client({ host: "127.0.0.1", port: Number(process.argv[2]), user: "analyst", password: "demo", database: "demo",
                              ssl: tls ? { rejectUnauthorized: false } : false });
  await client.connect();
  check(!tls || client.connection.stream.encrypted === true, "connect (SCRAM" + (tls ? ", TLS)" : ")"));
  const one = await client.query("SELECT 1 AS x");
  check(one.rows[0].x === 1, "simple query");
  const param = await client.query("SELECT COUNT(*) AS n FROM employees WHERE department = $1", ["Sales"]);
  const row = param.rows[0];
  check(Number(row.n_ci_low) <= Number(row.n) && Number(row.n) <= Number(row.n_ci_high), "$1 parameter with interval");
  const named = { name: "by-department", text: "SELECT department, AVG(salary) FROM employees WHERE age > $1 GROUP BY department", values: [30] };
  for (let i = 0; i < 3; i++) {
    const result = await client.query(named);
    check(result.rows.length === 10 && result.fields.map(f => f.name).join(",") === "department,avg,avg_ci_low,avg_ci_high,suppressed", "named prepared statement run " + i);
  }
  try {
    await client.query("SELECT * FROM employees");
    check(false, "refusal");
  } catch (e) {
    check(e.code === "0A000", "refusal with " + e.code);
  }
  check((await client.query("SELECT 2 AS y")).rows[0].y === 2, "usable after refusal");
  await client.end();
  console.log("all checks passed");
}

main().catch(e => { console.log("FAIL " + e); process.exit(1); });

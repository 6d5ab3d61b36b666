// pgJDBC against PrivacyLens: what DBeaver, Metabase and Tableau do through this driver.
// Run: java -cp /usr/share/java/postgresql.jar tests/clients/JdbcCheck.java <port> [sslmode]
// Prints one "ok <check>" line per passing check; exits 1 on the first failure.
import java.sql.*;
import java.util.*;

public class JdbcCheck {
    static void check(boolean condition, String what) {
        if (!condition) { System.out.println("FAIL " + what); System.exit(1); }
        System.out.println("ok " + what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/demo" + (args.length > 1 ? "?sslmode=" + args[1] : "");
        Properties props = new Properties();
        props.setProperty("user", "analyst");
        props.setProperty("password", "demo");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            check(meta.getDatabaseProductVersion().startsWith("15"), "product version " + meta.getDatabaseProductVersion());

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
            }
            check(tables.equals(List.of("employees:TABLE", "visits:TABLE")), "getTables " + tables);

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "employees", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("DATA_TYPE"));
            }
            check(columns.equals(List.of("user_id:int8:-5", "department:text:12", "salary:float8:8", "age:int4:4", "hire_date:date:91")),
                  "getColumns " + columns);

            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas()) { while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM")); }
            check(schemas.contains("public"), "getSchemas " + schemas);

            int types = 0;
            try (ResultSet rs = meta.getTypeInfo()) { while (rs.next()) types++; }
            check(types > 10, "getTypeInfo " + types + " types");

            int keys = 0;
            try (ResultSet rs = meta.getPrimaryKeys(null, "public", "employees")) { while (rs.next()) keys++; }
            check(keys == 0, "getPrimaryKeys (none)");

            String sql = "SELECT COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees WHERE department = ?";
            try (PreparedStatement ps = conn.prepareStatement(sql)) {
                ps.setQueryTimeout(30);
                for (int i = 0; i < 7; i++) {  // past prepareThreshold (5): server-side prepared, binary transfer
                    ps.setString(1, i % 2 == 0 ? "Sales" : "Legal");
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "prepared execution " + i);
                        long n = rs.getLong("n");
                        check(rs.getLong("n_ci_low") <= n && n <= rs.getLong("n_ci_high"), "interval holds its value " + i);
                        check(!rs.getBoolean("suppressed"), "boolean column " + i);
                        check(rs.getDouble("avg_salary") > 20000, "double column " + i);
                    }
                }
            }

            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.setFetchSize(3);  // a portal fetched 3 rows at a time (Execute with max_rows)
                int rows = 0;
                try (ResultSet rs = st.executeQuery("SELECT department, COUNT(*) FROM employees GROUP BY department")) {
                    while (rs.next()) rows++;
                }
                check(rows == 10, "setFetchSize rows " + rows);
            }
            conn.commit();
            conn.setAutoCommit(true);

            try (Statement st = conn.createStatement()) {
                st.setQueryTimeout(1);  // the driver sends a CancelRequest after 1 s
                st.executeQuery("SELECT count(*) FROM range(1000000000000)");
                check(false, "query timeout");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "setQueryTimeout cancels with " + e.getSQLState());
            }

            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM employees");
                check(false, "SELECT * refused");
            } catch (SQLException e) {
                check("0A000".equals(e.getSQLState()), "SELECT * refused with " + e.getSQLState());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                check(rs.next() && rs.getInt(1) == 1, "connection usable after refusal");
            }
        }
        System.out.println("all checks passed");
    }
}

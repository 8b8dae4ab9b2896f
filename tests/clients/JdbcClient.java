// What BI tools do through the PostgreSQL JDBC driver: connect, read metadata (tables and
// columns with their JDBC types), run a prepared query with a parameter. Prints one JSON
// object for the Rust test. Usage: java -cp postgresql.jar JdbcClient.java <jdbc url>
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static String quote(String s) {
        return s == null ? "null" : "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "bi");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData meta = conn.getMetaData();
            StringBuilder out = new StringBuilder("{");
            out.append("\"product\":").append(quote(meta.getDatabaseProductName()));
            out.append(",\"major\":").append(meta.getDatabaseMajorVersion());

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) tables.add(quote(rs.getString("TABLE_NAME")));
            }
            out.append(",\"tables\":").append(tables);

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "spans", "%")) {
                while (rs.next()) {
                    columns.add("[" + quote(rs.getString("COLUMN_NAME")) + "," + quote(rs.getString("TYPE_NAME")) + "]");
                }
            }
            out.append(",\"columns\":").append(columns);

            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT service_name, count(*) AS n, max(start_time) AS last FROM spans WHERE service_name = ? GROUP BY service_name")) {
                ps.setString(1, "checkout");
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    out.append(",\"service\":").append(quote(rs.getString(1)));
                    out.append(",\"count\":").append(rs.getLong(2));
                    Timestamp last = rs.getTimestamp(3);
                    out.append(",\"last_is_timestamp\":").append(last != null);
                    ResultSetMetaData md = rs.getMetaData();
                    out.append(",\"last_type\":").append(quote(md.getColumnTypeName(3)));
                }
            }
            out.append("}");
            System.out.println(out);
        }
    }
}

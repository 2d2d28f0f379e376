"""psycopg (3) against `dvsql serve`, run by tests/serve.rs: `psycopg_client.py CHECK PORT`
with the password in PGPASSWORD. Prints what it saw as one JSON line (or one text line);
any unexpected behaviour raises, which fails the test."""

import datetime
import decimal
import json
import sys
import threading
import time

import psycopg
from psycopg import errors


def connect(port):
    return psycopg.connect(
        host="127.0.0.1", port=port, user="dvsql", dbname="dvsql", autocommit=True,
        sslmode="disable", connect_timeout=10,
    )


def kind(value):
    if isinstance(value, decimal.Decimal):
        return "Decimal"
    if isinstance(value, datetime.datetime):
        return "datetime+tz" if value.tzinfo is not None else "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return "list[int]" if all(isinstance(v, int) for v in value) else "list"
    return type(value).__name__


def first_not_null(conn, table, column):
    row = conn.execute(
        f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL LIMIT 1").fetchone()
    return kind(row[0])


def types(port):
    out = {}
    with connect(port) as conn:
        # Parameters: the extended protocol with a numeric bound server-side.
        cur = conn.execute(
            "SELECT accountid, revenue FROM account WHERE revenue > %s "
            "ORDER BY accountid LIMIT 3",
            (decimal.Decimal("1000000"),),
        )
        out["parameterised"] = [[r[0], str(r[1])] for r in cur.fetchall()]
        # One prepared statement, executed with three values (an integer column: a Python
        # int for a numeric column is refused by arrow-pg, see README "What does not").
        out["prepared"] = []
        for threshold in (0, 1000, 5000):
            cur = conn.execute(
                "SELECT count(*) FROM account WHERE numberofemployees > %s",
                (threshold,), prepare=True,
            )
            out["prepared"].append(cur.fetchone()[0])
        out["types"] = {
            "revenue": first_not_null(conn, "account", "revenue"),
            "createdon": first_not_null(conn, "account", "createdon"),
            "birthdate": first_not_null(conn, "contact", "birthdate"),
            "creditonhold": first_not_null(conn, "account", "creditonhold"),
            "new_colors": first_not_null(conn, "new_widget", "new_colors"),
        }
        try:
            conn.execute("SELECT * FROM no_such_table")
            raise AssertionError("no error for an unknown table")
        except errors.UndefinedTable:
            pass
        one = conn.execute("SELECT 1").fetchone()[0]
        out["after_error"] = f"UndefinedTable then {one}"
        try:
            conn.execute("CREATE TABLE t AS SELECT 1")
            raise AssertionError("a write was accepted")
        except errors.ReadOnlySqlTransaction:
            out["write"] = "ReadOnlySqlTransaction"
    print(json.dumps(out))


def cancel(port):
    with connect(port) as conn:
        def cancel_soon():
            time.sleep(1.5)
            conn.cancel_safe()
        threading.Thread(target=cancel_soon, daemon=True).start()
        try:
            conn.execute("SELECT * FROM account").fetchall()
            raise AssertionError("the query was not cancelled")
        except errors.QueryCanceled:
            pass
        one = conn.execute("SELECT 1").fetchone()[0]
        print(f"QueryCanceled then {one}")


if __name__ == "__main__":
    {"types": types, "cancel": cancel}[sys.argv[1]](int(sys.argv[2]))

#!/usr/bin/env python3
"""Arrow Flight SQL as researchers' tools speak it, against a live hub with real tokens.

Clients: ADBC (`adbc-driver-flightsql`, through its DB-API), polars over ADBC, and
`pyarrow.flight` for the calls ADBC does not make by itself (handshake, Basic credentials,
forged tickets, updates). TLS is verified against the hub's CA. Every answer that carries data
is compared with the HTTPS endpoint's Arrow IPC answer for the same SQL and token.

Environment: HUB (https://127.0.0.1:PORT), FLIGHT (grpc+tls://127.0.0.1:PORT), CA (PEM path),
TOKENS (JSON: persona -> bearer token, plus `untrusted`, a token from an issuer the hub does
not trust). Prints one line per check; exits 1 at the first failure.
"""

import json
import os
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import polars as pl
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.ipc
import requests

HUB = os.environ["HUB"].rstrip("/")
FLIGHT = os.environ["FLIGHT"]
CA_PATH = os.environ["CA"]
CA = open(CA_PATH, encoding="ascii").read()
TOKENS = json.loads(os.environ["TOKENS"])
RESEARCHER = TOKENS["chercheuse-diabete"]

SMALL = "SELECT diagnostic, count(*) AS sejours FROM sante.sejours GROUP BY diagnostic ORDER BY sejours DESC, diagnostic LIMIT 5"
ROWS = "SELECT * FROM sante.sejours ORDER BY id_sejour LIMIT 3000"


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def connect(token, headers=None):
    kwargs = {
        "adbc.flight.sql.authorization_header": "Bearer " + token,
        "adbc.flight.sql.client_option.tls_root_certs": CA,
    }
    for name, value in (headers or {}).items():
        kwargs[f"adbc.flight.sql.rpc.call_header.{name}"] = value
    return flight_sql.connect(FLIGHT, db_kwargs=kwargs)


def over_https(token, sql, habilitation=None):
    body = {"sql": sql}
    if habilitation:
        body["habilitation"] = habilitation
    r = requests.post(
        HUB + "/v1/query",
        json=body,
        headers={"Authorization": "Bearer " + token, "Accept": "application/vnd.apache.arrow.stream"},
        verify=CA_PATH,
        timeout=60,
    )
    r.raise_for_status()
    return pa.ipc.open_stream(r.content).read_all()


def over_flight(token, sql, headers=None):
    with connect(token, headers) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def refused(call):
    """The gRPC/ADBC error message of `call`, or None when it did not fail."""
    try:
        call()
    except (adbc_driver_manager.Error, fl.FlightError, pa.ArrowException) as e:
        return str(e)
    return None


def pyarrow_client(token=None):
    client = fl.FlightClient(FLIGHT, tls_root_certs=CA.encode())
    options = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer " + token.encode())] if token else [])
    return client, options


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, data):
    """A length-delimited protobuf field."""
    return bytes([number << 3 | 2]) + varint(len(data)) + data


def command_of(message, text):
    """A Flight SQL command whose field 1 is `text` (or empty), packed in google.protobuf.Any,
    built by hand (pyarrow.flight has no Flight SQL messages)."""
    payload = field(1, text.encode()) if text is not None else b""
    type_url = "type.googleapis.com/arrow.flight.protocol.sql." + message
    return field(1, type_url.encode()) + field(2, payload)


def main():
    # Queries: the same answer as HTTPS, column for column, value for value.
    for sql in (SMALL, ROWS, "SELECT 1 AS one", "SELECT * FROM sante.sejours WHERE 1 = 0"):
        expected = over_https(RESEARCHER, sql)
        got = over_flight(RESEARCHER, sql)
        check(f"ADBC answer equals HTTPS ({sql[:40]}…)", got.equals(expected), f"{got.schema} vs {expected.schema}")

    # Prepared statements (ADBC prepares when asked to).
    with connect(RESEARCHER) as conn, conn.cursor() as cur:
        cur.adbc_prepare(SMALL)
        cur.execute(SMALL)
        got = cur.fetch_arrow_table()
    check("a prepared statement answers like HTTPS", got.equals(over_https(RESEARCHER, SMALL)))

    # Parameters bound to a prepared statement (a new sealed handle holds them).
    with connect(RESEARCHER) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n, min(region) AS r FROM sante.sejours WHERE region = $1 AND cout >= $2", parameters=("84", 1000))
        got = cur.fetch_arrow_table()
    expected = over_https(RESEARCHER, "SELECT count(*) AS n, min(region) AS r FROM sante.sejours WHERE region = '84' AND cout >= 1000")
    check("bound parameters answer like the literal SQL", got.equals(expected), f"{got} vs {expected}")

    # polars over ADBC.
    frame = pl.read_database(SMALL, connection=connect(RESEARCHER))
    check("polars reads through ADBC", frame.equals(pl.from_arrow(over_https(RESEARCHER, SMALL))), str(frame))

    # Metadata: only the caller's view. projet-diabete hides `nom` and pseudonymises `nir`.
    with connect(RESEARCHER) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        catalogs = [c["catalog_name"] for c in objects]
        check("catalogs are the caller's habilitations", catalogs == ["projet-diabete"], str(catalogs))
        tables = {
            f'{s["db_schema_name"]}.{t["table_name"]}': [c["column_name"] for c in t["table_columns"]]
            for c in objects
            for s in c["catalog_db_schemas"]
            for t in s["db_schema_tables"]
        }
        check("tables are the datasets the habilitation opens", "sante.sejours" in tables and "social.allocataires" not in tables, str(sorted(tables)))
        check("a hidden column does not exist", "nom" not in tables["sante.sejours"], str(tables["sante.sejours"]))
        schema = conn.adbc_get_table_schema("sejours", db_schema_filter="sante", catalog_filter="projet-diabete")
        check("a pseudonymised column has its treated type", schema.field("nir").type == pa.string(), str(schema))
        check("the table schema is the answer's schema", schema.equals(over_https(RESEARCHER, "SELECT * FROM sante.sejours LIMIT 0").schema), str(schema))
        info = conn.adbc_get_info()
        check("SqlInfo names the server", info.get("vendor_name") == "passerelle", str(info))

    # The habilitation header and the catalog must agree.
    emploi = TOKENS["chercheur-emploi"]
    got = over_flight(emploi, "SELECT count(*) AS n FROM sante.sejours", {"x-passerelle-habilitation": "projet-emploi"})
    check("the habilitation header chooses the habilitation", got.equals(over_https(emploi, "SELECT count(*) AS n FROM sante.sejours", "projet-emploi")))
    message = refused(lambda: over_flight(RESEARCHER, SMALL, {"x-passerelle-habilitation": "projet-emploi"}))
    check("a habilitation the caller does not hold is refused", message is not None, str(message))

    # Refusals: no token, a garbage token, an untrusted issuer, a lookup-only habilitation, an
    # expired habilitation.
    client, _ = pyarrow_client()
    catalogs = fl.FlightDescriptor.for_command(command_of("CommandGetCatalogs", None))
    message = refused(lambda: client.get_flight_info(catalogs))
    check("a call without a token is refused", message is not None and "nauthenticated" in message, str(message))
    for who in ("garbage", "untrusted"):
        token = "not.a.token" if who == "garbage" else TOKENS["untrusted"]
        message = refused(lambda: over_flight(token, "SELECT 1"))
        check(f"a {who} token is refused", message is not None and "UNAUTHENTICATED" in message.upper(), str(message))
    message = refused(lambda: over_flight(TOKENS["caf"], "SELECT 1"))
    check("a lookup-only habilitation runs no SQL", message is not None and "query_not_allowed" in message, str(message))
    message = refused(lambda: over_flight(TOKENS["chercheur-expire"], "SELECT 1"))
    check("an expired habilitation is refused", message is not None and "expired" in message, str(message))

    # Handshake: a bearer is accepted; Basic (a person's password) refused.
    class BearerHandshake(fl.ClientAuthHandler):
        def authenticate(self, outgoing, incoming):
            outgoing.write(b"")
            incoming.read()

        def get_token(self):
            return b""

    client, options = pyarrow_client(RESEARCHER)
    message = refused(lambda: client.authenticate(BearerHandshake(), options))
    check("a handshake with a bearer token succeeds", message is None, str(message))
    client, options = pyarrow_client(RESEARCHER)
    message = refused(lambda: client.authenticate_basic_token("chercheuse-diabete", "password"))
    check("Basic credentials are refused", message is not None and "Basic" in message, str(message))

    # Tickets are opaque, sealed and bound to their principal.
    command = command_of("CommandStatementQuery", SMALL)
    info = client.get_flight_info(fl.FlightDescriptor.for_command(command), options)
    ticket = info.endpoints[0].ticket
    check("a ticket does not show its SQL", b"diagnostic" not in ticket.ticket and b"chercheuse" not in ticket.ticket)
    table = client.do_get(ticket, options).read_all()
    check("a ticket redeems to the HTTPS answer", table.equals(over_https(RESEARCHER, SMALL)))
    _, emploi_options = pyarrow_client(emploi)
    message = refused(lambda: client.do_get(ticket, emploi_options).read_all())
    check("another principal cannot redeem a ticket", message is not None and "statement_handle_invalid" in message, str(message))
    forged = fl.Ticket(ticket.ticket[:-3] + bytes(b ^ 1 for b in ticket.ticket[-3:]))
    message = refused(lambda: client.do_get(forged, options).read_all())
    check("a forged ticket is refused", message is not None and ("statement_handle_invalid" in message or "nvalid" in message), str(message))

    # Nothing writes.
    update = command_of("CommandStatementUpdate", "DELETE FROM sante.sejours")
    def put_update():
        writer, _ = client.do_put(fl.FlightDescriptor.for_command(update), pa.schema([]), options)
        writer.close()
    message = refused(put_update)
    check("an update is refused", message is not None and "read_only" in message, str(message))
    message = refused(lambda: over_flight(RESEARCHER, "DELETE FROM sante.sejours"))
    check("DML through a query is refused", message is not None, str(message))
    print("flight_sql.py: every check passed")


if __name__ == "__main__":
    main()

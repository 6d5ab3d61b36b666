"""The rows of the emulated catalog, computed from the policy (pure; no DuckDB here).

Each relation is (DuckDB schema, name, [(column, DuckDB type)], rows). OIDs follow PostgreSQL's:
built-in types keep their real OIDs (drivers map result types by them), datasets get OIDs from 16384
as user relations do in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.session_settings import CLIENT_DEFAULTS, SERVER_PARAMETERS
from rewriter.policy import Policy

OWNER_OID = 10
OWNER_NAME = "privacylens"
NAMESPACES = {"pg_catalog": 11, "public": 2200, "information_schema": 13183}
FIRST_USER_OID = 16384

# name: (oid, typlen, category, array oid, element oid)
BASE_TYPES: dict[str, tuple[int, int, str, int, int]] = {
    "bool": (16, 1, "B", 1000, 0), "bytea": (17, -1, "U", 1001, 0), "char": (18, 1, "Z", 1002, 0),
    "name": (19, 64, "S", 1003, 0), "int8": (20, 8, "N", 1016, 0), "int2": (21, 2, "N", 1005, 0),
    "int2vector": (22, -1, "A", 1006, 21), "int4": (23, 4, "N", 1007, 0), "regproc": (24, 4, "N", 1008, 0),
    "text": (25, -1, "S", 1009, 0), "oid": (26, 4, "N", 1028, 0), "oidvector": (30, -1, "A", 1013, 26),
    "json": (114, -1, "U", 199, 0), "float4": (700, 4, "N", 1021, 0), "float8": (701, 8, "N", 1022, 0),
    "unknown": (705, -2, "X", 0, 0), "bpchar": (1042, -1, "S", 1014, 0), "varchar": (1043, -1, "S", 1015, 0),
    "date": (1082, 4, "D", 1182, 0), "time": (1083, 8, "D", 1183, 0), "timestamp": (1114, 8, "D", 1115, 0),
    "timestamptz": (1184, 8, "D", 1185, 0), "interval": (1186, 16, "T", 1187, 0),
    "numeric": (1700, -1, "N", 1231, 0), "regclass": (2205, 4, "N", 2210, 0),
    "regtype": (2206, 4, "N", 2211, 0),
    "uuid": (2950, 16, "U", 2951, 0), "jsonb": (3802, -1, "U", 3807, 0), "void": (2278, 4, "P", 0, 0),
    "record": (2249, -1, "P", 2287, 0), "anyarray": (2277, -1, "P", 0, 0),
}  # fmt: skip

# How format_type spells each type, as PostgreSQL does.
FORMAT_NAMES = {
    "bool": "boolean", "int8": "bigint", "int2": "smallint", "int4": "integer", "float4": "real",
    "float8": "double precision", "varchar": "character varying", "bpchar": "character",
    "timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
    "time": "time without time zone", "char": '"char"',
}  # fmt: skip

POLICY_TYPES = {
    "bigint": "int8", "integer": "int4", "double": "float8", "text": "text", "date": "date",
    "boolean": "bool", "timestamp": "timestamp",
}  # fmt: skip


@dataclass(frozen=True)
class Relation:
    schema: str  # the DuckDB schema it lives in: pg_catalog → pgc, information_schema → pgi
    name: str
    columns: tuple[tuple[str, str], ...]
    rows: tuple[tuple[Any, ...], ...] = ()


def all_types() -> list[tuple[str, int, int, str, int, int]]:
    """(name, oid, typlen, category, array oid, element oid), arrays included."""
    out = []
    for name, (oid, length, category, array, element) in BASE_TYPES.items():
        out.append((name, oid, length, category, array, element))
        if array:
            out.append((f"_{name}", array, -1, "A", 0, oid))
    return out


def type_name_sql() -> str:
    """A CASE expression body mapping a type oid `t` to format_type's spelling."""
    whens = []
    for name, oid, *_rest, element in all_types():
        if name.startswith("_"):
            base = next(n for n, o, *_ in all_types() if o == element)
            spelled = FORMAT_NAMES.get(base, base) + "[]"
        else:
            spelled = FORMAT_NAMES.get(name, name)
        whens.append(f"WHEN {oid} THEN '{spelled}'")
    return " ".join(whens)


def relations(policy: Policy) -> list[Relation]:
    datasets = sorted(policy.datasets)
    dataset_oid = {name: FIRST_USER_OID + 2 * i for i, name in enumerate(datasets)}
    rowtype_oid = {name: FIRST_USER_OID + 2 * i + 1 for i, name in enumerate(datasets)}
    type_oid = {name: oid for name, oid, *_ in all_types()}
    type_len = {name: length for name, _oid, length, *_ in all_types()}

    namespace = Relation(
        "pgc",
        "pg_namespace",
        (("oid", "BIGINT"), ("nspname", "VARCHAR"), ("nspowner", "BIGINT"), ("nspacl", "VARCHAR[]")),
        tuple((oid, name, OWNER_OID, None) for name, oid in NAMESPACES.items()),
    )

    class_rows = []
    attribute_rows = []
    description_rows = []
    columns_rows = []
    for name in datasets:
        dataset = policy.datasets[name]
        oid = dataset_oid[name]
        class_rows.append(
            (
                oid,
                name,
                NAMESPACES["public"],
                rowtype_oid[name],
                0,
                OWNER_OID,
                2,
                oid,
                0,
                0,
                -1.0,
                0,
                0,
                False,
                False,
                "p",
                "r",
                len(dataset.columns),
                0,
                False,
                False,
                False,
                False,
                False,
                True,
                "d",
                False,
                0,
                None,
                None,
            )
        )
        if dataset.description:
            description_rows.append((oid, 1259, 0, dataset.description))
        for number, (column, spec) in enumerate(dataset.columns.items(), start=1):
            pg_type = POLICY_TYPES[spec.type]
            attribute_rows.append(
                (
                    oid,
                    column,
                    type_oid[pg_type],
                    number,
                    type_len[pg_type],
                    -1,
                    0,
                    False,
                    False,
                    False,
                    "",
                    "",
                    False,
                    True,
                    0,
                    0,
                    None,
                    "x" if type_len[pg_type] < 0 else "p",
                    "",
                    -1,
                )
            )
            if spec.description:
                description_rows.append((oid, 1259, number, spec.description))
            columns_rows.append(
                (
                    "demo",
                    "public",
                    name,
                    column,
                    number,
                    None,
                    "YES",
                    FORMAT_NAMES.get(pg_type, pg_type),
                    pg_type,
                    None,
                    None,
                )
            )

    pg_class = Relation(
        "pgc",
        "pg_class",
        (
            ("oid", "BIGINT"),
            ("relname", "VARCHAR"),
            ("relnamespace", "BIGINT"),
            ("reltype", "BIGINT"),
            ("reloftype", "BIGINT"),
            ("relowner", "BIGINT"),
            ("relam", "BIGINT"),
            ("relfilenode", "BIGINT"),
            ("reltablespace", "BIGINT"),
            ("relpages", "INTEGER"),
            ("reltuples", "DOUBLE"),
            ("relallvisible", "INTEGER"),
            ("reltoastrelid", "BIGINT"),
            ("relhasindex", "BOOLEAN"),
            ("relisshared", "BOOLEAN"),
            ("relpersistence", "VARCHAR"),
            ("relkind", "VARCHAR"),
            ("relnatts", "SMALLINT"),
            ("relchecks", "SMALLINT"),
            ("relhasrules", "BOOLEAN"),
            ("relhastriggers", "BOOLEAN"),
            ("relhassubclass", "BOOLEAN"),
            ("relrowsecurity", "BOOLEAN"),
            ("relforcerowsecurity", "BOOLEAN"),
            ("relispopulated", "BOOLEAN"),
            ("relreplident", "VARCHAR"),
            ("relispartition", "BOOLEAN"),
            ("relrewrite", "BIGINT"),
            ("relacl", "VARCHAR[]"),
            ("reloptions", "VARCHAR[]"),
        ),
        tuple(class_rows),
    )
    pg_attribute = Relation(
        "pgc",
        "pg_attribute",
        (
            ("attrelid", "BIGINT"),
            ("attname", "VARCHAR"),
            ("atttypid", "BIGINT"),
            ("attnum", "SMALLINT"),
            ("attlen", "SMALLINT"),
            ("atttypmod", "INTEGER"),
            ("attndims", "SMALLINT"),
            ("attnotnull", "BOOLEAN"),
            ("atthasdef", "BOOLEAN"),
            ("atthasmissing", "BOOLEAN"),
            ("attidentity", "VARCHAR"),
            ("attgenerated", "VARCHAR"),
            ("attisdropped", "BOOLEAN"),
            ("attislocal", "BOOLEAN"),
            ("attinhcount", "INTEGER"),
            ("attcollation", "BIGINT"),
            ("attacl", "VARCHAR[]"),
            ("attstorage", "VARCHAR"),
            ("attcompression", "VARCHAR"),
            ("attstattarget", "INTEGER"),
        ),
        tuple(attribute_rows),
    )
    pg_type = Relation(
        "pgc",
        "pg_type",
        (
            ("oid", "BIGINT"),
            ("typname", "VARCHAR"),
            ("typnamespace", "BIGINT"),
            ("typowner", "BIGINT"),
            ("typlen", "SMALLINT"),
            ("typbyval", "BOOLEAN"),
            ("typtype", "VARCHAR"),
            ("typcategory", "VARCHAR"),
            ("typispreferred", "BOOLEAN"),
            ("typisdefined", "BOOLEAN"),
            ("typdelim", "VARCHAR"),
            ("typrelid", "BIGINT"),
            ("typelem", "BIGINT"),
            ("typarray", "BIGINT"),
            ("typinput", "VARCHAR"),
            ("typoutput", "VARCHAR"),
            ("typreceive", "VARCHAR"),
            ("typsend", "VARCHAR"),
            ("typalign", "VARCHAR"),
            ("typstorage", "VARCHAR"),
            ("typnotnull", "BOOLEAN"),
            ("typbasetype", "BIGINT"),
            ("typtypmod", "INTEGER"),
            ("typndims", "INTEGER"),
            ("typcollation", "BIGINT"),
            ("typdefault", "VARCHAR"),
        ),
        tuple(
            (
                oid,
                name,
                NAMESPACES["pg_catalog"],
                OWNER_OID,
                length,
                0 < length <= 8,
                "p" if cat == "P" else "b",
                cat,
                False,
                True,
                ",",
                0,
                element,
                array,
                f"{name}in",
                f"{name}out",
                f"{name}recv",
                f"{name}send",
                "i",
                "p",
                False,
                0,
                -1,
                0,
                100 if cat == "S" else 0,
                None,
            )
            for name, oid, length, cat, array, element in all_types()
        )
        + tuple(
            (
                rowtype_oid[n],
                n,
                NAMESPACES["public"],
                OWNER_OID,
                -1,
                False,
                "c",
                "C",
                False,
                True,
                ",",
                dataset_oid[n],
                0,
                0,
                "record_in",
                "record_out",
                "record_recv",
                "record_send",
                "d",
                "x",
                False,
                0,
                -1,
                0,
                0,
                None,
            )
            for n in datasets
        ),
    )
    pg_database = Relation(
        "pgc",
        "pg_database",
        (
            ("oid", "BIGINT"),
            ("datname", "VARCHAR"),
            ("datdba", "BIGINT"),
            ("encoding", "INTEGER"),
            ("datlocprovider", "VARCHAR"),
            ("datistemplate", "BOOLEAN"),
            ("datallowconn", "BOOLEAN"),
            ("datconnlimit", "INTEGER"),
            ("dattablespace", "BIGINT"),
            ("datcollate", "VARCHAR"),
            ("datctype", "VARCHAR"),
            ("daticulocale", "VARCHAR"),
            ("datcollversion", "VARCHAR"),
            ("datacl", "VARCHAR[]"),
        ),
        ((16383, "demo", OWNER_OID, 6, "c", False, True, -1, 1663, "C", "C", None, None, None),),
    )
    pg_description = Relation(
        "pgc",
        "pg_description",
        (("objoid", "BIGINT"), ("classoid", "BIGINT"), ("objsubid", "INTEGER"), ("description", "VARCHAR")),
        tuple(description_rows),
    )
    pg_am = Relation(
        "pgc",
        "pg_am",
        (("oid", "BIGINT"), ("amname", "VARCHAR"), ("amhandler", "VARCHAR"), ("amtype", "VARCHAR")),
        ((2, "heap", "heap_tableam_handler", "t"), (403, "btree", "bthandler", "i")),
    )
    pg_roles = Relation(
        "pgc",
        "pg_roles",
        (
            ("oid", "BIGINT"),
            ("rolname", "VARCHAR"),
            ("rolsuper", "BOOLEAN"),
            ("rolinherit", "BOOLEAN"),
            ("rolcreaterole", "BOOLEAN"),
            ("rolcreatedb", "BOOLEAN"),
            ("rolcanlogin", "BOOLEAN"),
            ("rolreplication", "BOOLEAN"),
            ("rolconnlimit", "INTEGER"),
            ("rolvaliduntil", "TIMESTAMP"),
            ("rolbypassrls", "BOOLEAN"),
            ("rolconfig", "VARCHAR[]"),
        ),
        ((OWNER_OID, OWNER_NAME, False, True, False, False, False, False, -1, None, False, None),),
    )
    pg_tablespace = Relation(
        "pgc",
        "pg_tablespace",
        (("oid", "BIGINT"), ("spcname", "VARCHAR"), ("spcowner", "BIGINT")),
        ((1663, "pg_default", OWNER_OID),),
    )
    pg_settings = Relation(
        "pgc",
        "pg_settings",
        (("name", "VARCHAR"), ("setting", "VARCHAR"), ("unit", "VARCHAR"), ("category", "VARCHAR"),
         ("short_desc", "VARCHAR"), ("context", "VARCHAR"), ("vartype", "VARCHAR"), ("source", "VARCHAR")),
        tuple((name, value, None, "PrivacyLens", "", "user", "string", "default")
              for name, value in sorted({**SERVER_PARAMETERS, **CLIENT_DEFAULTS}.items())),
    )  # fmt: skip
    empty = [
        Relation(
            "pgc",
            "pg_index",
            (
                ("indexrelid", "BIGINT"),
                ("indrelid", "BIGINT"),
                ("indnatts", "SMALLINT"),
                ("indnkeyatts", "SMALLINT"),
                ("indisunique", "BOOLEAN"),
                ("indisprimary", "BOOLEAN"),
                ("indisexclusion", "BOOLEAN"),
                ("indimmediate", "BOOLEAN"),
                ("indisclustered", "BOOLEAN"),
                ("indisvalid", "BOOLEAN"),
                ("indisreplident", "BOOLEAN"),
                ("indkey", "SMALLINT[]"),
                ("indoption", "SMALLINT[]"),
                ("indexprs", "VARCHAR"),
                ("indpred", "VARCHAR"),
                ("indnullsnotdistinct", "BOOLEAN"),
                ("indclass", "BIGINT[]"),
                ("indcollation", "BIGINT[]"),
            ),
        ),
        Relation(
            "pgc",
            "pg_constraint",
            (
                ("oid", "BIGINT"),
                ("conname", "VARCHAR"),
                ("connamespace", "BIGINT"),
                ("contype", "VARCHAR"),
                ("condeferrable", "BOOLEAN"),
                ("condeferred", "BOOLEAN"),
                ("convalidated", "BOOLEAN"),
                ("conrelid", "BIGINT"),
                ("contypid", "BIGINT"),
                ("conindid", "BIGINT"),
                ("conparentid", "BIGINT"),
                ("confrelid", "BIGINT"),
                ("confupdtype", "VARCHAR"),
                ("confdeltype", "VARCHAR"),
                ("confmatchtype", "VARCHAR"),
                ("conislocal", "BOOLEAN"),
                ("coninhcount", "INTEGER"),
                ("connoinherit", "BOOLEAN"),
                ("conkey", "SMALLINT[]"),
                ("confkey", "SMALLINT[]"),
                ("conbin", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc",
            "pg_attrdef",
            (("oid", "BIGINT"), ("adrelid", "BIGINT"), ("adnum", "SMALLINT"), ("adbin", "VARCHAR")),
        ),
        Relation(
            "pgc",
            "pg_inherits",
            (
                ("inhrelid", "BIGINT"),
                ("inhparent", "BIGINT"),
                ("inhseqno", "INTEGER"),
                ("inhdetachpending", "BOOLEAN"),
            ),
        ),
        Relation(
            "pgc",
            "pg_matviews",
            (
                ("schemaname", "VARCHAR"),
                ("matviewname", "VARCHAR"),
                ("matviewowner", "VARCHAR"),
                ("definition", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc",
            "pg_views",
            (
                ("schemaname", "VARCHAR"),
                ("viewname", "VARCHAR"),
                ("viewowner", "VARCHAR"),
                ("definition", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc", "pg_range", (("rngtypid", "BIGINT"), ("rngsubtype", "BIGINT"), ("rngmultitypid", "BIGINT"))
        ),
        Relation(
            "pgc",
            "pg_enum",
            (
                ("oid", "BIGINT"),
                ("enumtypid", "BIGINT"),
                ("enumsortorder", "DOUBLE"),
                ("enumlabel", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc",
            "pg_proc",
            (
                ("oid", "BIGINT"),
                ("proname", "VARCHAR"),
                ("pronamespace", "BIGINT"),
                ("proowner", "BIGINT"),
                ("prokind", "VARCHAR"),
                ("prorettype", "BIGINT"),
                ("proargtypes", "BIGINT[]"),
                ("proretset", "BOOLEAN"),
            ),
        ),
        Relation(
            "pgc",
            "pg_trigger",
            (
                ("oid", "BIGINT"),
                ("tgrelid", "BIGINT"),
                ("tgname", "VARCHAR"),
                ("tgisinternal", "BOOLEAN"),
                ("tgenabled", "VARCHAR"),
            ),
        ),
        Relation("pgc", "pg_rewrite", (("oid", "BIGINT"), ("rulename", "VARCHAR"), ("ev_class", "BIGINT"))),
        Relation(
            "pgc",
            "pg_policy",
            (
                ("oid", "BIGINT"),
                ("polname", "VARCHAR"),
                ("polrelid", "BIGINT"),
                ("polcmd", "VARCHAR"),
                ("polpermissive", "BOOLEAN"),
                ("polroles", "BIGINT[]"),
                ("polqual", "VARCHAR"),
                ("polwithcheck", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc",
            "pg_statistic_ext",
            (
                ("oid", "BIGINT"),
                ("stxrelid", "BIGINT"),
                ("stxname", "VARCHAR"),
                ("stxnamespace", "BIGINT"),
                ("stxowner", "BIGINT"),
                ("stxstattarget", "INTEGER"),
                ("stxkeys", "SMALLINT[]"),
                ("stxkind", "VARCHAR[]"),
                ("stxexprs", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc", "pg_publication", (("oid", "BIGINT"), ("pubname", "VARCHAR"), ("puballtables", "BOOLEAN"))
        ),
        Relation(
            "pgc",
            "pg_publication_rel",
            (
                ("oid", "BIGINT"),
                ("prpubid", "BIGINT"),
                ("prrelid", "BIGINT"),
                ("prqual", "VARCHAR"),
                ("prattrs", "SMALLINT[]"),
            ),
        ),
        Relation(
            "pgc",
            "pg_publication_namespace",
            (("oid", "BIGINT"), ("pnpubid", "BIGINT"), ("pnnspid", "BIGINT")),
        ),
        Relation("pgc", "pg_foreign_table", (("ftrelid", "BIGINT"), ("ftserver", "BIGINT"))),
        Relation("pgc", "pg_partitioned_table", (("partrelid", "BIGINT"), ("partstrat", "VARCHAR"))),
        Relation(
            "pgc", "pg_collation", (("oid", "BIGINT"), ("collname", "VARCHAR"), ("collnamespace", "BIGINT"))
        ),
        Relation(
            "pgc", "pg_extension", (("oid", "BIGINT"), ("extname", "VARCHAR"), ("extversion", "VARCHAR"))
        ),
        Relation("pgc", "pg_cursors", (("name", "VARCHAR"), ("statement", "VARCHAR"))),
        Relation(
            "pgc",
            "pg_stat_user_tables",
            (("relid", "BIGINT"), ("schemaname", "VARCHAR"), ("relname", "VARCHAR")),
        ),
        Relation("pgc", "pg_event_trigger", (("oid", "BIGINT"), ("evtname", "VARCHAR"))),
        Relation(
            "pgc",
            "pg_depend",
            (
                ("classid", "BIGINT"),
                ("objid", "BIGINT"),
                ("objsubid", "INTEGER"),
                ("refclassid", "BIGINT"),
                ("refobjid", "BIGINT"),
                ("refobjsubid", "INTEGER"),
                ("deptype", "VARCHAR"),
            ),
        ),
        Relation(
            "pgc",
            "pg_sequence",
            (
                ("seqrelid", "BIGINT"),
                ("seqtypid", "BIGINT"),
                ("seqstart", "BIGINT"),
                ("seqincrement", "BIGINT"),
                ("seqmax", "BIGINT"),
                ("seqmin", "BIGINT"),
                ("seqcache", "BIGINT"),
                ("seqcycle", "BOOLEAN"),
            ),
        ),
    ]
    empty += [
        Relation(
            "pgc",
            "pg_opclass",
            (
                ("oid", "BIGINT"),
                ("opcmethod", "BIGINT"),
                ("opcname", "VARCHAR"),
                ("opcnamespace", "BIGINT"),
                ("opcintype", "BIGINT"),
                ("opcdefault", "BOOLEAN"),
            ),
        ),
        Relation(
            "pgc",
            "pg_auth_members",
            (("roleid", "BIGINT"), ("member", "BIGINT"), ("grantor", "BIGINT"), ("admin_option", "BOOLEAN")),
        ),
    ]
    tables = Relation(
        "pgc",
        "pg_tables",
        (
            ("schemaname", "VARCHAR"),
            ("tablename", "VARCHAR"),
            ("tableowner", "VARCHAR"),
            ("tablespace", "VARCHAR"),
            ("hasindexes", "BOOLEAN"),
            ("hasrules", "BOOLEAN"),
            ("hastriggers", "BOOLEAN"),
            ("rowsecurity", "BOOLEAN"),
        ),
        tuple(("public", n, OWNER_NAME, None, False, False, False, False) for n in datasets),
    )
    user = Relation(
        "pgc",
        "pg_user",
        (("usename", "VARCHAR"), ("usesysid", "BIGINT"), ("usesuper", "BOOLEAN")),
        ((OWNER_NAME, OWNER_OID, False),),
    )

    info = [
        Relation(
            "pgi",
            "schemata",
            (("catalog_name", "VARCHAR"), ("schema_name", "VARCHAR"), ("schema_owner", "VARCHAR")),
            tuple(("demo", n, OWNER_NAME) for n in NAMESPACES),
        ),
        Relation(
            "pgi",
            "tables",
            (
                ("table_catalog", "VARCHAR"),
                ("table_schema", "VARCHAR"),
                ("table_name", "VARCHAR"),
                ("table_type", "VARCHAR"),
                ("is_insertable_into", "VARCHAR"),
                ("is_typed", "VARCHAR"),
            ),
            tuple(("demo", "public", n, "BASE TABLE", "NO", "NO") for n in datasets),
        ),
        Relation(
            "pgi",
            "columns",
            (
                ("table_catalog", "VARCHAR"),
                ("table_schema", "VARCHAR"),
                ("table_name", "VARCHAR"),
                ("column_name", "VARCHAR"),
                ("ordinal_position", "INTEGER"),
                ("column_default", "VARCHAR"),
                ("is_nullable", "VARCHAR"),
                ("data_type", "VARCHAR"),
                ("udt_name", "VARCHAR"),
                ("character_maximum_length", "INTEGER"),
                ("numeric_precision", "INTEGER"),
            ),
            tuple(columns_rows),
        ),
        Relation(
            "pgi",
            "views",
            (
                ("table_catalog", "VARCHAR"),
                ("table_schema", "VARCHAR"),
                ("table_name", "VARCHAR"),
                ("view_definition", "VARCHAR"),
            ),
        ),
        Relation(
            "pgi",
            "table_constraints",
            (
                ("constraint_catalog", "VARCHAR"),
                ("constraint_schema", "VARCHAR"),
                ("constraint_name", "VARCHAR"),
                ("table_schema", "VARCHAR"),
                ("table_name", "VARCHAR"),
                ("constraint_type", "VARCHAR"),
            ),
        ),
        Relation(
            "pgi",
            "key_column_usage",
            (
                ("constraint_schema", "VARCHAR"),
                ("constraint_name", "VARCHAR"),
                ("table_schema", "VARCHAR"),
                ("table_name", "VARCHAR"),
                ("column_name", "VARCHAR"),
                ("ordinal_position", "INTEGER"),
            ),
        ),
        Relation(
            "pgi",
            "referential_constraints",
            (
                ("constraint_schema", "VARCHAR"),
                ("constraint_name", "VARCHAR"),
                ("unique_constraint_schema", "VARCHAR"),
                ("unique_constraint_name", "VARCHAR"),
            ),
        ),
        Relation(
            "pgi",
            "routines",
            (("routine_schema", "VARCHAR"), ("routine_name", "VARCHAR"), ("routine_type", "VARCHAR")),
        ),
        Relation("pgi", "character_sets", (("character_set_name", "VARCHAR"),), (("UTF8",),)),
    ]
    return [
        namespace,
        pg_class,
        pg_attribute,
        pg_type,
        pg_database,
        pg_description,
        pg_am,
        pg_roles,
        pg_tablespace,
        pg_settings,
        tables,
        user,
        *empty,
        *info,
    ]

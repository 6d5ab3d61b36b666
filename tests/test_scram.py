"""SCRAM-SHA-256 against the RFC 7677 test vector, and refusal of bad proofs."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from proxy.scram import ScramError, ScramServer, Verifier, make_verifier

CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)


def rfc_verifier() -> Verifier:
    return Verifier.parse(
        make_verifier("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096)
    )


def test_rfc7677_vector() -> None:
    server = ScramServer(rfc_verifier(), server_nonce=SERVER_NONCE)
    assert server.first(CLIENT_FIRST) == (
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert server.final(CLIENT_FINAL) == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_empty_user_name_as_libpq_sends_it() -> None:
    verifier = Verifier.parse(make_verifier("demo"))
    server = ScramServer(verifier)
    server_first = server.first("n,,n=,r=abc")
    nonce = server_first.split(",")[0][2:]
    without_proof = f"c=biws,r={nonce}"
    salted = hashlib.pbkdf2_hmac("sha256", b"demo", verifier.salt, verifier.iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    auth = f"n=,r=abc,{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    assert server.final(f"{without_proof},p={proof}").startswith("v=")


@pytest.mark.parametrize(
    "client_final",
    [
        CLIENT_FINAL.replace("p=dHzb", "p=eHzb"),  # wrong proof
        CLIENT_FINAL.replace("r=rOpr", "r=xOpr"),  # nonce mismatch
        CLIENT_FINAL.replace("c=biws", "c=eSws"),  # GS2 header mismatch
        "c=biws",  # no proof
        "garbage",
    ],
)
def test_bad_final_messages_fail(client_final: str) -> None:
    server = ScramServer(rfc_verifier(), server_nonce=SERVER_NONCE)
    server.first(CLIENT_FIRST)
    with pytest.raises(ScramError):
        server.final(client_final)


def test_channel_binding_is_not_offered() -> None:
    with pytest.raises(ScramError):
        ScramServer(rfc_verifier()).first("p=tls-server-end-point,,n=,r=abc")

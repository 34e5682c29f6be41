"""End-to-end: the official Dapr Python SDK (dapr==1.19.0, unmodified) against `outrigger run`.

The state scenarios run twice, against the embedded in-memory `statestore` and against a
`state.redis` component backed by a redis-server started for the session (see conftest.py).
Keys are unique per test, so the tests do not depend on each other's data.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from conftest import redis_command, unique_key

STORE = "statestore"


def _get(client, key):
    return client.get_state(store_name=STORE, key=key)


# --------------------------------------------------------------------------------------
# basic CRUD
# --------------------------------------------------------------------------------------


def test_save_get_delete(client):
    key = unique_key()
    client.save_state(STORE, key, "value-1")
    first = _get(client, key)
    assert first.data == b"value-1"
    assert first.text() == "value-1"
    assert first.etag, "get_state must return an etag for an existing key"

    client.save_state(STORE, key, "value-2")
    second = _get(client, key)
    assert second.data == b"value-2"
    assert second.etag and second.etag != first.etag, "an overwrite must change the etag"

    client.delete_state(STORE, key)
    gone = _get(client, key)
    assert gone.data == b""
    assert gone.etag == ""


def test_get_missing_key_returns_empty_data(client):
    resp = _get(client, unique_key("missing"))
    assert resp.data == b""
    assert resp.etag == ""


def test_delete_missing_key_is_not_an_error(client):
    key = unique_key("never-saved")
    client.delete_state(STORE, key)
    assert _get(client, key).data == b""


def test_binary_and_unicode_values_round_trip(client):
    raw = bytes(range(256))  # not valid UTF-8, includes NUL
    k1, k2 = unique_key("bin"), unique_key("uni")
    client.save_state(STORE, k1, raw)
    client.save_state(STORE, k2, "héllo wörld ✓")
    assert _get(client, k1).data == raw
    assert _get(client, k2).data == "héllo wörld ✓".encode("utf-8")


def test_keys_are_case_sensitive_and_independent(client):
    base = unique_key("case")
    client.save_state(STORE, base.lower() + "-x", "lower")
    client.save_state(STORE, base.upper() + "-X", "upper")
    assert _get(client, base.lower() + "-x").data == b"lower"
    assert _get(client, base.upper() + "-X").data == b"upper"


# --------------------------------------------------------------------------------------
# bulk
# --------------------------------------------------------------------------------------


def test_save_bulk_and_get_bulk(client):
    # No StateOptions on the items: dapr 1.19.0's save_bulk_state passes the Python
    # StateOptions object straight into the protobuf and fails inside the SDK.
    k1, k2, k3 = unique_key("b1"), unique_key("b2"), unique_key("b3")
    missing = unique_key("b-missing")
    client.save_bulk_state(
        STORE,
        [StateItem(key=k1, value="one"), StateItem(key=k2, value=b"two"), StateItem(key=k3, value="three")],
    )

    order = [k3, missing, k1, k2]
    resp = client.get_bulk_state(STORE, keys=order)
    assert [item.key for item in resp.items] == order
    by_key = {item.key: item for item in resp.items}
    assert by_key[k1].data == b"one"
    assert by_key[k2].data == b"two"
    assert by_key[k3].data == b"three"
    assert by_key[missing].data == b""
    assert by_key[missing].etag == ""
    for k in (k1, k2, k3):
        assert by_key[k].etag, f"bulk get must return an etag for {k}"
        assert by_key[k].error == ""
        # the etag from a bulk read is the same one a single read returns
        assert by_key[k].etag == _get(client, k).etag

    # parallelism > 1 must not change the answer or its order
    resp2 = client.get_bulk_state(STORE, keys=order, parallelism=3)
    assert [(i.key, i.data) for i in resp2.items] == [(i.key, i.data) for i in resp.items]


def test_save_bulk_with_etags(client):
    key = unique_key("bulk-etag")
    client.save_state(STORE, key, "v1")
    etag = _get(client, key).etag
    client.save_bulk_state(STORE, [StateItem(key=key, value="v2", etag=etag)])
    assert _get(client, key).data == b"v2"
    with pytest.raises(DaprGrpcError) as excinfo:
        client.save_bulk_state(STORE, [StateItem(key=key, value="v3", etag=etag)])
    assert excinfo.value.code() == grpc.StatusCode.ABORTED
    assert _get(client, key).data == b"v2"


# --------------------------------------------------------------------------------------
# transactions
# --------------------------------------------------------------------------------------


def test_transaction_upsert_and_delete(client):
    keep, drop, new = unique_key("tx-keep"), unique_key("tx-drop"), unique_key("tx-new")
    client.save_state(STORE, keep, "old")
    client.save_state(STORE, drop, "doomed")

    client.execute_state_transaction(
        STORE,
        operations=[
            TransactionalStateOperation(key=keep, data="updated"),
            TransactionalStateOperation(key=new, data=b"created"),
            TransactionalStateOperation(key=drop, operation_type=TransactionOperationType.delete),
        ],
    )
    assert _get(client, keep).data == b"updated"
    assert _get(client, new).data == b"created"
    assert _get(client, drop).data == b""


def test_transaction_with_current_etags(client):
    a, b = unique_key("tx-ea"), unique_key("tx-eb")
    client.save_state(STORE, a, "a0")
    client.save_state(STORE, b, "b0")
    ea, eb = _get(client, a).etag, _get(client, b).etag
    client.execute_state_transaction(
        STORE,
        operations=[
            TransactionalStateOperation(key=a, data="a1", etag=ea),
            TransactionalStateOperation(key=b, etag=eb, operation_type=TransactionOperationType.delete),
        ],
    )
    assert _get(client, a).data == b"a1"
    assert _get(client, b).data == b""


def test_transaction_with_stale_etag_applies_nothing(client):
    upserted, guarded = unique_key("tx-up"), unique_key("tx-guard")
    client.save_state(STORE, guarded, "g0")
    stale = _get(client, guarded).etag
    client.save_state(STORE, guarded, "g1")  # makes `stale` stale

    with pytest.raises(DaprGrpcError):
        client.execute_state_transaction(
            STORE,
            operations=[
                TransactionalStateOperation(key=upserted, data="must-not-appear"),
                TransactionalStateOperation(
                    key=guarded, etag=stale, operation_type=TransactionOperationType.delete
                ),
            ],
        )
    assert _get(client, guarded).data == b"g1"
    assert _get(client, upserted).data == b"", "a failed transaction must not apply its other operations"


# --------------------------------------------------------------------------------------
# etags and concurrency
# --------------------------------------------------------------------------------------


def test_save_with_current_etag_succeeds_and_stale_etag_is_aborted(client):
    key = unique_key("etag")
    client.save_state(STORE, key, "v1")
    etag1 = _get(client, key).etag
    assert etag1

    client.save_state(STORE, key, "v2", etag=etag1)
    after = _get(client, key)
    assert after.data == b"v2"
    assert after.etag != etag1

    with pytest.raises(DaprGrpcError) as excinfo:
        client.save_state(STORE, key, "v3", etag=etag1)  # etag1 is now stale
    assert excinfo.value.code() == grpc.StatusCode.ABORTED, excinfo.value.details()
    unchanged = _get(client, key)
    assert unchanged.data == b"v2"
    assert unchanged.etag == after.etag


def test_delete_with_stale_etag_is_aborted(client):
    key = unique_key("del-etag")
    client.save_state(STORE, key, "v1")
    stale = _get(client, key).etag
    client.save_state(STORE, key, "v2")
    current = _get(client, key).etag

    with pytest.raises(DaprGrpcError) as excinfo:
        client.delete_state(STORE, key, etag=stale)
    assert excinfo.value.code() == grpc.StatusCode.ABORTED, excinfo.value.details()
    assert _get(client, key).data == b"v2"

    client.delete_state(STORE, key, etag=current)
    assert _get(client, key).data == b""


def test_first_write_concurrency(client):
    first_write = StateOptions(concurrency=Concurrency.first_write)
    key = unique_key("fw")

    # a new key: first-write without an etag is allowed
    client.save_state(STORE, key, "original", options=first_write)
    assert _get(client, key).data == b"original"

    # an existing key: first-write without an etag must be refused
    with pytest.raises(DaprGrpcError):
        client.save_state(STORE, key, "clobber", options=first_write)
    assert _get(client, key).data == b"original"

    # ...but first-write with the current etag succeeds
    etag = _get(client, key).etag
    client.save_state(STORE, key, "second", etag=etag, options=first_write)
    assert _get(client, key).data == b"second"

    # last-write (the default) without an etag just overwrites
    client.save_state(STORE, key, "third", options=StateOptions(concurrency=Concurrency.last_write))
    assert _get(client, key).data == b"third"


# --------------------------------------------------------------------------------------
# TTL
# --------------------------------------------------------------------------------------


def test_ttl_expires_item(client):
    short, plain = unique_key("ttl"), unique_key("no-ttl")
    client.save_state(STORE, short, "ephemeral", state_metadata={"ttlInSeconds": "1"})
    client.save_state(STORE, plain, "durable")
    assert _get(client, short).data == b"ephemeral", "a TTL item must be readable before it expires"

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _get(client, short).data == b"":
            break
        time.sleep(0.2)
    resp = _get(client, short)
    assert resp.data == b"", "item saved with ttlInSeconds=1 still present after 5 s"
    assert resp.etag == ""
    assert _get(client, plain).data == b"durable"


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


def test_unknown_store_is_rejected(client):
    name = f"no-such-store-{uuid.uuid4().hex[:6]}"
    with pytest.raises(DaprGrpcError) as excinfo:
        client.get_state(store_name=name, key="k")
    err = excinfo.value
    assert "not found" in (err.details() or ""), err.details()
    assert name in (err.details() or ""), err.details()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()

    with pytest.raises(DaprGrpcError) as excinfo:
        client.save_state(store_name=name, key="k", value="v")
    assert "not found" in (excinfo.value.details() or "")


def test_key_containing_double_pipe_is_rejected(client):
    # "||" separates the app-id prefix from the key in Dapr, so Dapr refuses it in a key.
    bad = f"a||{unique_key()}"
    with pytest.raises(DaprGrpcError) as excinfo:
        client.save_state(STORE, bad, "v")
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT, excinfo.value.details()
    assert "||" in (excinfo.value.details() or "")


# --------------------------------------------------------------------------------------
# the asyncio client of the same SDK
# --------------------------------------------------------------------------------------


def test_aio_client_save_get_delete(store_sidecar, connect):
    connect(store_sidecar)  # sets the environment for the sidecar (and checks health)
    from dapr.aio.clients import DaprClient as AioDaprClient

    key = unique_key("aio")

    async def scenario():
        async with AioDaprClient() as d:
            await d.save_state(STORE, key, "async-value")
            got = await d.get_state(STORE, key)
            await d.delete_state(STORE, key)
            gone = await d.get_state(STORE, key)
            return got, gone

    got, gone = asyncio.run(scenario())
    assert got.data == b"async-value"
    assert got.etag
    assert gone.data == b""


# --------------------------------------------------------------------------------------
# API token (sidecar started with DAPR_API_TOKEN)
# --------------------------------------------------------------------------------------

TOKEN = "secret"


@pytest.fixture(scope="module")
def token_sidecar(start_sidecar):
    sc = start_sidecar(f"py-token-{uuid.uuid4().hex[:6]}", env={"DAPR_API_TOKEN": TOKEN})
    yield sc
    rc = sc.stop()
    assert rc == 0, f"outrigger exited {rc} after SIGTERM:\n{sc.output()[-4000:]}"


def test_api_token_right_token_works(token_sidecar, connect):
    client = connect(token_sidecar, token=TOKEN)
    key = unique_key("tok")
    client.save_state(STORE, key, "authorised")
    assert _get(client, key).data == b"authorised"
    client.delete_state(STORE, key)
    assert _get(client, key).data == b""


@pytest.mark.parametrize("bad_token", ["wrong", None], ids=["wrong-token", "no-token"])
def test_api_token_bad_token_is_unauthenticated(token_sidecar, connect, bad_token):
    # The SDK's health probe (/v1.0/healthz/outbound) must not need the token, as in Dapr,
    # so constructing the client succeeds; the state calls are then refused.
    client = connect(token_sidecar, token=bad_token)
    key = unique_key("tok-bad")
    with pytest.raises(DaprGrpcError) as excinfo:
        client.save_state(STORE, key, "intruder")
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value.details()
    with pytest.raises(DaprGrpcError) as excinfo:
        _get(client, key)
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value.details()

    # and nothing was written: a client with the right token sees no value
    good = connect(token_sidecar, token=TOKEN)
    assert _get(good, key).data == b""


# --------------------------------------------------------------------------------------
# Redis: Dapr's on-disk layout, key prefixing per app id, persistence across restarts
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_resources(redis_port, tmp_path_factory):
    from conftest import write_redis_component

    return write_redis_component(tmp_path_factory.mktemp("resources-shared-redis"), redis_port)


def test_redis_layout_matches_dapr(redis_port, redis_resources, start_sidecar, connect):
    app_id = f"py-layout-{uuid.uuid4().hex[:6]}"
    sc = start_sidecar(app_id, resources_path=redis_resources)
    client = connect(sc)
    key = unique_key("layout")
    client.save_state(STORE, key, "hello")
    etag = _get(client, key).etag

    # Dapr's state.redis keeps each item as a hash under "<app-id>||<key>" with the
    # value in field "data" and the etag in field "version".
    redis_key = f"{app_id}||{key}"
    assert redis_command(redis_port, "TYPE", redis_key) == "hash"
    fields = redis_command(redis_port, "HGETALL", redis_key)
    as_dict = dict(zip(fields[::2], fields[1::2]))
    assert as_dict.get(b"data") == b"hello"
    assert as_dict.get(b"version") == etag.encode()

    # and a value put there the way Dapr would is read back through outrigger
    other = unique_key("seeded")
    redis_command(redis_port, "HSET", f"{app_id}||{other}", "data", "from-dapr", "version", "7")
    seeded = _get(client, other)
    assert seeded.data == b"from-dapr"
    assert seeded.etag == "7"


def test_redis_keys_are_prefixed_per_app_id(redis_resources, start_sidecar, connect):
    a = start_sidecar(f"py-app-a-{uuid.uuid4().hex[:6]}", resources_path=redis_resources)
    b = start_sidecar(f"py-app-b-{uuid.uuid4().hex[:6]}", resources_path=redis_resources)
    key = unique_key("shared-name")
    client_a = connect(a)
    client_a.save_state(STORE, key, "belongs-to-a")
    client_b = connect(b)  # re-points the SDK environment at b
    assert _get(client_b, key).data == b"", "app b must not see app a's key"
    client_b.save_state(STORE, key, "belongs-to-b")
    assert _get(client_a, key).data == b"belongs-to-a"
    assert _get(client_b, key).data == b"belongs-to-b"


def test_redis_state_survives_sidecar_restart(redis_resources, start_sidecar, connect):
    app_id = f"py-restart-{uuid.uuid4().hex[:6]}"
    key = unique_key("persist")
    first = start_sidecar(app_id, resources_path=redis_resources)
    client = connect(first)
    client.save_state(STORE, key, "kept")
    etag = _get(client, key).etag
    client.close()
    assert first.stop() == 0

    second = start_sidecar(app_id, resources_path=redis_resources)
    client = connect(second)
    resp = _get(client, key)
    assert resp.data == b"kept"
    assert resp.etag == etag


# --------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------


def test_sigterm_exits_zero(start_sidecar, connect):
    sc = start_sidecar(f"py-stop-{uuid.uuid4().hex[:6]}")
    client = connect(sc)
    client.save_state(STORE, unique_key("stop"), "x")
    client.close()
    assert sc.alive()
    rc = sc.stop()
    assert rc == 0, f"exit code {rc}:\n{sc.output()[-4000:]}"
    assert not sc.alive()

"""End-to-end pub/sub: the official Dapr Python SDK (dapr==1.19.0, unmodified) against
`outrigger run` with its embedded in-memory `pubsub` component.

Events are published with `publish_event` / `publish_events` (gRPC) or
POST /v1.0/publish/{pubsub}/{topic} (HTTP) and received through the SDK's streaming
subscription (`DaprClient.subscribe`, i.e. SubscribeTopicEventsAlpha1).

The in-memory pub/sub keeps nothing for a topic without subscribers, and the sidecar
registers a streaming subscription only after it has answered the initial request, so every
subscription here is first made "ready": probe events are published until one comes back.
Probes are acknowledged by the reader thread and never reach the test. Every topic is unique
per test, so the tests do not see each other's events.

No test can hang: a reader thread per subscription feeds a queue, and every wait has a deadline.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from typing import List, Optional

import grpc
import pytest
from dapr.clients import BulkPublishEntry
from dapr.clients.exceptions import DaprGrpcError
from dapr.common.pubsub.subscription import StreamCancelledError, StreamInactiveError
from dapr.proto import api_v1

from conftest import unique_key

PUBSUB = "pubsub"
PROBE_PREFIX = b"__outrigger_probe__"
RECEIVE_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 5.0
TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pubsub_sidecar(start_sidecar):
    """A sidecar without --resources-path, so it serves the embedded in-memory `pubsub`."""
    sc = start_sidecar(f"py-pubsub-{uuid.uuid4().hex[:6]}")
    yield sc
    assert sc.alive(), f"outrigger died during the pub/sub tests:\n{sc.output()[-4000:]}"
    rc = sc.stop()
    assert rc == 0, f"outrigger exited {rc} after SIGTERM:\n{sc.output()[-4000:]}"


@pytest.fixture
def client(pubsub_sidecar, connect):
    return connect(pubsub_sidecar)


class Receiver:
    """Reads a streaming subscription on a thread; the test takes messages from a queue.

    Probe events (payload starting with PROBE_PREFIX) are acknowledged here and counted,
    everything else is queued for the test, which must answer it itself."""

    def __init__(self, subscription, topic: str):
        self.subscription = subscription
        self.topic = topic
        self.messages: "queue.Queue" = queue.Queue()
        self.probes_seen = threading.Event()
        self.error: Optional[BaseException] = None
        self.closing = False
        self._thread = threading.Thread(target=self._run, name=f"sub-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                message = self.subscription.next_message()
            except (StreamInactiveError, StreamCancelledError):
                return
            except BaseException as e:  # surfaced by get()
                if not self.closing:
                    self.error = e
                return
            if message is None:
                continue
            if message.raw_data().startswith(PROBE_PREFIX):
                self.subscription.respond_success(message)
                self.probes_seen.set()
                continue
            self.messages.put(message)

    def get(self, timeout: float = RECEIVE_TIMEOUT_S):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            detail = f"; reader failed: {self.error!r}" if self.error else ""
            raise AssertionError(
                f"no event on topic {self.topic!r} within {timeout}s{detail}"
            ) from None

    def get_many(self, n: int, timeout: float = RECEIVE_TIMEOUT_S) -> List:
        """Takes n events, acknowledging each (SUCCESS) as it arrives: the in-memory pubsub
        hands a subscription one event at a time and waits for its answer."""
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"got {len(out)} of {n} events on topic {self.topic!r} within {timeout}s: "
                    f"{[m.raw_data() for m in out]!r}"
                )
            msg = self.get(timeout=remaining)
            self.subscription.respond_success(msg)
            out.append(msg)
        return out

    def assert_nothing(self, within: float) -> None:
        try:
            extra = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(
            f"unexpected event on topic {self.topic!r}: id={extra.id()} data={extra.raw_data()!r}"
        )

    def close(self) -> None:
        self.closing = True
        self.subscription.close()
        self._thread.join(timeout=5)


@pytest.fixture
def subscribe(client):
    """Factory: subscribe(topic, dead_letter_topic=None, ready=True) -> Receiver.

    With ready=True, returns only once an event published to `topic` has been delivered
    to this subscription. Every subscription is closed after the test (before the sidecar
    fixture stops the sidecar)."""
    receivers: List[Receiver] = []

    def _subscribe(topic: str, dead_letter_topic: Optional[str] = None, ready: bool = True):
        sub = client.subscribe(pubsub_name=PUBSUB, topic=topic, dead_letter_topic=dead_letter_topic)
        receiver = Receiver(sub, topic)
        receivers.append(receiver)
        if ready:
            wait_ready(client, receiver)
        return receiver

    yield _subscribe
    for r in receivers:
        r.close()


def wait_ready(client, receiver: Receiver) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        client.publish_event(
            PUBSUB,
            receiver.topic,
            PROBE_PREFIX + uuid.uuid4().hex.encode(),
            data_content_type="text/plain",
        )
        if receiver.probes_seen.wait(timeout=0.1):
            return
    detail = f"; reader failed: {receiver.error!r}" if receiver.error else ""
    raise AssertionError(
        f"subscription to {receiver.topic!r} received no probe within {READY_TIMEOUT_S}s{detail}"
    )


def http_publish(sidecar, pubsub: str, topic: str, body: bytes, content_type: Optional[str],
                 headers: Optional[dict] = None):
    """POST /v1.0/publish/{pubsub}/{topic}; returns (status, body bytes)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{sidecar.http_port}/v1.0/publish/{pubsub}/{topic}",
        data=body,
        method="POST",
    )
    if content_type is not None:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def assert_dapr_envelope(msg, *, app_id: str, topic: str, content_type: str) -> None:
    """The CloudEvent attributes Dapr sets on an event it wrapped itself."""
    assert UUID_RE.match(msg.id()), f"id should be a UUID, got {msg.id()!r}"
    assert msg.source() == app_id
    assert msg.type() == "com.dapr.event.sent"
    assert msg.spec_version() == "1.0"
    assert msg.data_content_type() == content_type
    assert msg.topic() == topic
    assert msg.pubsub_name() == PUBSUB

    ext = msg.extensions()
    for key in ("topic", "pubsubname", "traceid", "traceparent", "tracestate", "time"):
        assert key in ext, f"CloudEvent extension {key!r} missing: {ext!r}"
    for own in ("id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"):
        assert own not in ext, f"{own!r} has its own field and must not be an extension: {ext!r}"
    assert ext["topic"] == topic
    assert ext["pubsubname"] == PUBSUB
    assert TRACEPARENT_RE.match(ext["traceparent"]), ext["traceparent"]
    assert ext["traceid"] == ext["traceparent"]
    published = datetime.fromisoformat(ext["time"].replace("Z", "+00:00"))
    assert published.tzinfo is not None, ext["time"]
    assert abs(datetime.now(timezone.utc) - published) < timedelta(minutes=1), ext["time"]


# --------------------------------------------------------------------------------------
# publish_event (gRPC PublishEvent)
# --------------------------------------------------------------------------------------


def test_publish_text_event_arrives_as_dapr_cloudevent(client, subscribe, pubsub_sidecar):
    topic = unique_key("text")
    sub = subscribe(topic)
    client.publish_event(PUBSUB, topic, "hello wörld ✓", data_content_type="text/plain")

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert_dapr_envelope(msg, app_id=pubsub_sidecar.app_id, topic=topic, content_type="text/plain")
    assert msg.raw_data() == "hello wörld ✓".encode("utf-8")
    assert msg.data() == "hello wörld ✓"
    sub.assert_nothing(within=0.3)


def test_publish_without_content_type_defaults_to_text_plain(client, subscribe, pubsub_sidecar):
    topic = unique_key("default-ct")
    sub = subscribe(topic)
    client.publish_event(PUBSUB, topic, "no content type given")

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert_dapr_envelope(msg, app_id=pubsub_sidecar.app_id, topic=topic, content_type="text/plain")
    assert msg.data() == "no content type given"


def test_publish_json_event_delivers_the_json_value(client, subscribe, pubsub_sidecar):
    topic = unique_key("json")
    sub = subscribe(topic)
    payload = {"orderId": 42, "items": ["a", "b"], "nested": {"ok": True, "none": None}}
    client.publish_event(PUBSUB, topic, json.dumps(payload), data_content_type="application/json")

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert_dapr_envelope(
        msg, app_id=pubsub_sidecar.app_id, topic=topic, content_type="application/json"
    )
    assert msg.data() == payload
    assert json.loads(msg.raw_data()) == payload


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("plain string", id="string"),
        pytest.param(7, id="number"),
        pytest.param([1, "two", None], id="array"),
    ],
)
def test_publish_json_scalar_and_array_values_round_trip(client, subscribe, value):
    """Dapr hands JSON-typed data to the subscriber re-encoded as JSON (json.Marshal of the
    CloudEvent's `data`), so a JSON string arrives quoted and parses back to the same value."""
    topic = unique_key("json-value")
    sub = subscribe(topic)
    client.publish_event(PUBSUB, topic, json.dumps(value), data_content_type="application/json")

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert msg.data_content_type() == "application/json"
    assert msg.raw_data() == json.dumps(value, separators=(",", ":")).encode()
    assert msg.data() == value


def test_publish_binary_event_round_trips_bytes(client, subscribe, pubsub_sidecar):
    topic = unique_key("bin")
    sub = subscribe(topic)
    raw = bytes(range(256))  # not UTF-8, contains NUL
    client.publish_event(PUBSUB, topic, raw, data_content_type="application/octet-stream")

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert_dapr_envelope(
        msg, app_id=pubsub_sidecar.app_id, topic=topic, content_type="application/octet-stream"
    )
    assert msg.raw_data() == raw


def test_publish_cloudevent_keeps_its_own_attributes(client, subscribe):
    topic = unique_key("ce")
    sub = subscribe(topic)
    event = {
        "specversion": "1.0",
        "id": "my-event-" + uuid.uuid4().hex[:8],
        "source": "urn:example:orders",
        "type": "com.example.order.created",
        "datacontenttype": "application/json",
        "data": {"orderId": 7},
        "myext": "custom-value",
    }
    client.publish_event(
        PUBSUB, topic, json.dumps(event), data_content_type="application/cloudevents+json"
    )

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert msg.id() == event["id"]
    assert msg.source() == event["source"]
    assert msg.type() == event["type"]
    assert msg.spec_version() == "1.0"
    assert msg.data_content_type() == "application/json"
    assert msg.data() == {"orderId": 7}
    assert msg.topic() == topic
    assert msg.pubsub_name() == PUBSUB
    ext = msg.extensions()
    assert ext.get("myext") == "custom-value"
    assert ext.get("topic") == topic
    assert ext.get("pubsubname") == PUBSUB


def test_each_publish_gets_a_new_id(client, subscribe):
    topic = unique_key("ids")
    sub = subscribe(topic)
    for i in range(3):
        client.publish_event(PUBSUB, topic, f"same-{i}", data_content_type="text/plain")
    msgs = sub.get_many(3)
    assert [m.data() for m in msgs] == ["same-0", "same-1", "same-2"]  # one publisher, in order
    assert len({m.id() for m in msgs}) == 3


def test_subscription_is_live_when_subscribe_returns(client, subscribe):
    """Dapr starts the subscription before it sends the initial response, so an event
    published right after subscribe() returns is delivered (no probing here)."""
    for i in range(5):
        topic = unique_key("live")
        sub = subscribe(topic, ready=False)
        client.publish_event(PUBSUB, topic, f"right away {i}", data_content_type="text/plain")
        msg = sub.get()
        sub.subscription.respond_success(msg)
        assert msg.data() == f"right away {i}"
        sub.close()


def test_publish_with_no_subscriber_is_accepted_and_not_retained(client, subscribe):
    topic = unique_key("nosub")
    client.publish_event(PUBSUB, topic, "nobody listens", data_content_type="text/plain")
    sub = subscribe(topic)  # ready: probes published after subscribing are delivered
    client.publish_event(PUBSUB, topic, "after subscribe", data_content_type="text/plain")
    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert msg.data() == "after subscribe"
    sub.assert_nothing(within=0.3)


# --------------------------------------------------------------------------------------
# publish_events (gRPC BulkPublishEvent / BulkPublishEventAlpha1)
# --------------------------------------------------------------------------------------


def test_bulk_publish_delivers_every_entry(client, subscribe, pubsub_sidecar):
    topic = unique_key("bulk")
    sub = subscribe(topic)
    resp = client.publish_events(
        PUBSUB,
        topic,
        [
            "first",
            "second",
            BulkPublishEntry(event='{"n": 3}', content_type="application/json"),
            BulkPublishEntry(event=b"\x00\x01\xff", content_type="application/octet-stream"),
        ],
        data_content_type="text/plain",
    )
    assert resp.failed_entries == []

    msgs = sub.get_many(4)
    by_type = {}
    for m in msgs:
        assert m.source() == pubsub_sidecar.app_id
        assert m.type() == "com.dapr.event.sent"
        assert m.topic() == topic
        assert m.pubsub_name() == PUBSUB
        by_type.setdefault(m.data_content_type(), []).append(m)
    assert sorted(m.data() for m in by_type["text/plain"]) == ["first", "second"]
    assert [m.data() for m in by_type["application/json"]] == [{"n": 3}]
    assert [m.raw_data() for m in by_type["application/octet-stream"]] == [b"\x00\x01\xff"]
    assert len({m.id() for m in msgs}) == 4, "every entry is its own event with its own id"
    sub.assert_nothing(within=0.3)


def test_bulk_publish_rejects_duplicate_entry_ids(client, subscribe):
    topic = unique_key("bulk-dup")
    sub = subscribe(topic)
    with pytest.raises(DaprGrpcError):
        client.publish_events(
            PUBSUB,
            topic,
            [BulkPublishEntry(event="a", entry_id="same"), BulkPublishEntry(event="b", entry_id="same")],
        )
    sub.assert_nothing(within=0.3)  # nothing of a rejected request is published


def test_bulk_publish_alpha1_rpc_delivers_every_entry(client, subscribe):
    """The SDK falls back to BulkPublishEventAlpha1 on UNIMPLEMENTED; call it through the
    SDK's generated stub to make sure the alpha RPC works on its own."""
    topic = unique_key("bulk-alpha")
    sub = subscribe(topic)
    req = api_v1.BulkPublishRequest(
        pubsub_name=PUBSUB,
        topic=topic,
        entries=[
            api_v1.BulkPublishRequestEntry(entry_id="e1", event=b"alpha-1", content_type="text/plain"),
            api_v1.BulkPublishRequestEntry(entry_id="e2", event=b"alpha-2", content_type="text/plain"),
        ],
    )
    resp = client._stub.BulkPublishEventAlpha1(req, timeout=10)
    assert list(resp.failedEntries) == []
    msgs = sub.get_many(2)
    assert sorted(m.data() for m in msgs) == ["alpha-1", "alpha-2"]


# --------------------------------------------------------------------------------------
# subscriber answers: SUCCESS, RETRY, DROP (+ dead-letter topic)
# --------------------------------------------------------------------------------------


def test_retry_redelivers_the_same_event(client, subscribe):
    topic = unique_key("retry")
    sub = subscribe(topic)
    client.publish_event(PUBSUB, topic, json.dumps({"attempt": "x"}), data_content_type="application/json")

    first = sub.get()
    t0 = time.monotonic()
    sub.subscription.respond_retry(first)
    second = sub.get()
    gap = time.monotonic() - t0
    assert second.id() == first.id()
    assert second.raw_data() == first.raw_data()
    assert second.data() == {"attempt": "x"}
    assert second.source() == first.source()
    assert second.extensions().get("time") == first.extensions().get("time")
    assert gap >= 0.03, f"redelivered after {gap:.3f}s; expected a retry delay (~50 ms)"

    sub.subscription.respond_retry(second)
    third = sub.get()
    assert third.id() == first.id()
    sub.subscription.respond_success(third)
    sub.assert_nothing(within=0.4)  # SUCCESS is final


def test_retry_blocks_later_events_until_answered(client, subscribe):
    """The in-memory pubsub delivers in order: a retried event comes back before the next one."""
    topic = unique_key("retry-order")
    sub = subscribe(topic)
    client.publish_event(PUBSUB, topic, "one", data_content_type="text/plain")
    client.publish_event(PUBSUB, topic, "two", data_content_type="text/plain")

    first = sub.get()
    assert first.data() == "one"
    sub.subscription.respond_retry(first)
    again = sub.get()
    assert (again.id(), again.data()) == (first.id(), "one")
    sub.subscription.respond_success(again)
    nxt = sub.get()
    assert nxt.data() == "two" and nxt.id() != first.id()
    sub.subscription.respond_success(nxt)


def test_drop_without_dead_letter_discards_the_event(client, subscribe):
    topic = unique_key("drop")
    sub = subscribe(topic)
    client.publish_event(PUBSUB, topic, "drop me", data_content_type="text/plain")
    dropped = sub.get()
    sub.subscription.respond_drop(dropped)
    sub.assert_nothing(within=0.4)

    # The subscription keeps working after a drop.
    client.publish_event(PUBSUB, topic, "next", data_content_type="text/plain")
    nxt = sub.get()
    sub.subscription.respond_success(nxt)
    assert nxt.data() == "next" and nxt.id() != dropped.id()


def test_drop_with_dead_letter_topic_forwards_the_event(client, subscribe, pubsub_sidecar):
    topic = unique_key("dl-src")
    dlq = unique_key("dl-dlq")
    dead = subscribe(dlq)
    main = subscribe(topic, dead_letter_topic=dlq)

    payload = {"poison": True, "n": 1}
    client.publish_event(PUBSUB, topic, json.dumps(payload), data_content_type="application/json")
    original = main.get()
    main.subscription.respond_drop(original)

    forwarded = dead.get()
    dead.subscription.respond_success(forwarded)
    assert forwarded.id() == original.id()
    assert forwarded.source() == pubsub_sidecar.app_id
    assert forwarded.type() == original.type()
    assert forwarded.data_content_type() == "application/json"
    assert forwarded.data() == payload
    assert forwarded.topic() == dlq  # delivered on the dead-letter topic
    assert forwarded.pubsub_name() == PUBSUB
    # Published unchanged: the CloudEvent still names the topic it was first published to.
    assert forwarded.extensions().get("topic") == topic
    main.assert_nothing(within=0.3)
    dead.assert_nothing(within=0.1)


def test_success_and_retry_do_not_reach_the_dead_letter_topic(client, subscribe):
    topic = unique_key("dl-ok")
    dlq = unique_key("dl-ok-dlq")
    dead = subscribe(dlq)
    main = subscribe(topic, dead_letter_topic=dlq)

    client.publish_event(PUBSUB, topic, "fine", data_content_type="text/plain")
    m = main.get()
    main.subscription.respond_retry(m)
    m2 = main.get()
    assert m2.id() == m.id()
    main.subscription.respond_success(m2)
    dead.assert_nothing(within=0.4)


# --------------------------------------------------------------------------------------
# HTTP publish
# --------------------------------------------------------------------------------------


def test_http_publish_text_reaches_sdk_subscriber(subscribe, pubsub_sidecar):
    topic = unique_key("http-text")
    sub = subscribe(topic)
    status, body = http_publish(pubsub_sidecar, PUBSUB, topic, "über http".encode(), "text/plain")
    assert status == 204, (status, body)
    assert body == b""

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert_dapr_envelope(msg, app_id=pubsub_sidecar.app_id, topic=topic, content_type="text/plain")
    assert msg.data() == "über http"


def test_http_publish_json_reaches_sdk_subscriber(subscribe, pubsub_sidecar):
    topic = unique_key("http-json")
    sub = subscribe(topic)
    payload = {"via": "http", "list": [1, 2, 3]}
    status, body = http_publish(
        pubsub_sidecar, PUBSUB, topic, json.dumps(payload).encode(), "application/json"
    )
    assert status == 204, (status, body)

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert_dapr_envelope(
        msg, app_id=pubsub_sidecar.app_id, topic=topic, content_type="application/json"
    )
    assert msg.data() == payload


def test_http_publish_keeps_the_callers_trace_id(subscribe, pubsub_sidecar):
    topic = unique_key("http-trace")
    sub = subscribe(topic)
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    status, body = http_publish(
        pubsub_sidecar, PUBSUB, topic, b"traced", "text/plain", headers={"traceparent": traceparent}
    )
    assert status == 204, (status, body)

    msg = sub.get()
    sub.subscription.respond_success(msg)
    ext = msg.extensions()
    assert TRACEPARENT_RE.match(ext["traceparent"]), ext
    assert ext["traceparent"].split("-")[1] == trace_id, ext


def test_http_publish_cloudevent_keeps_its_own_attributes(subscribe, pubsub_sidecar):
    topic = unique_key("http-ce")
    sub = subscribe(topic)
    event = {
        "specversion": "1.0",
        "id": "http-ce-" + uuid.uuid4().hex[:8],
        "source": "urn:example:http",
        "type": "com.example.http",
        "datacontenttype": "text/plain",
        "data": "ce body",
    }
    status, body = http_publish(
        pubsub_sidecar, PUBSUB, topic, json.dumps(event).encode(), "application/cloudevents+json"
    )
    assert status == 204, (status, body)

    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert (msg.id(), msg.source(), msg.type()) == (event["id"], event["source"], event["type"])
    assert msg.data_content_type() == "text/plain"
    assert msg.data() == "ce body"
    assert msg.topic() == topic


def test_http_publish_binary_round_trips_bytes(subscribe, pubsub_sidecar):
    topic = unique_key("http-bin")
    sub = subscribe(topic)
    raw = bytes(range(255, -1, -1))
    status, body = http_publish(pubsub_sidecar, PUBSUB, topic, raw, "application/octet-stream")
    assert status == 204, (status, body)
    msg = sub.get()
    sub.subscription.respond_success(msg)
    assert msg.data_content_type() == "application/octet-stream"
    assert msg.raw_data() == raw


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


def test_publish_to_unknown_pubsub_raises(client):
    with pytest.raises(DaprGrpcError) as info:
        client.publish_event("no-such-pubsub", unique_key("t"), "x", data_content_type="text/plain")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not found" in (info.value.details() or "").lower(), info.value.details()


def test_bulk_publish_to_unknown_pubsub_raises(client):
    with pytest.raises(DaprGrpcError) as info:
        client.publish_events("no-such-pubsub", unique_key("t"), ["a", "b"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not found" in (info.value.details() or "").lower(), info.value.details()


def test_subscribe_to_unknown_pubsub_raises(client):
    with pytest.raises(Exception) as info:
        sub = client.subscribe(pubsub_name="no-such-pubsub", topic=unique_key("t"))
        sub.close()  # only reached if subscribe() wrongly succeeded
    assert "not found" in str(info.value).lower(), str(info.value)


def test_http_publish_to_unknown_pubsub_is_404(pubsub_sidecar):
    status, body = http_publish(
        pubsub_sidecar, "no-such-pubsub", unique_key("t"), b"x", "text/plain"
    )
    assert status == 404, (status, body)
    assert json.loads(body)["errorCode"] == "ERR_PUBSUB_NOT_FOUND", body

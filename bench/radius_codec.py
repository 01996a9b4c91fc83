"""Micro-benchmark of the RADIUS codec: parse + verify Message-Authenticator + decrypt
User-Password + build a signed reply, per second on one core.

Runs the same work through mfad's codec and through pyrad's packet classes (the
alternative the codec replaces) and prints both, so the choice stays measured. With
``--listener N`` it also serves N Access-Requests from radclient (freeradius-utils,
64 in flight) through the real listener with a trivial accepting handler: the
transport's own ceiling, without the core.

    PYTHONPATH=. python bench/radius_codec.py [--seconds 3] [--listener 20000] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from pyrad.packet import AccessAccept, AuthPacket  # type: ignore[import-untyped]

from mfad.radius import (
    ClientTable,
    CountingMetrics,
    Decision,
    NoReply,
    RadiusClient,
    RadiusRequest,
    RadiusServer,
    RadiusServerSettings,
)
from mfad.radius.attributes import DICTIONARY, Attr
from mfad.radius.codec import (
    RadiusCode,
    decode_request,
    encode_reply,
    encode_request,
    hide_password,
    split_text,
)

SECRET = b"bench-shared-secret-0123456789"


def sample_request() -> bytes:
    authenticator = os.urandom(16)
    attributes = [
        (Attr.USER_NAME, b"alice@example.org"),
        (Attr.USER_PASSWORD, hide_password(b"123456", SECRET, authenticator)),
        (Attr.NAS_IP_ADDRESS, bytes([192, 0, 2, 10])),
        (5, (7).to_bytes(4, "big")),
        (Attr.CALLING_STATION_ID, b"02-00-00-00-00-01"),
        (Attr.NAS_IDENTIFIER, b"vpn-gw-1"),
        (Attr.PROXY_STATE, b"\x01\x02\x03\x04"),
    ]
    return encode_request(RadiusCode.ACCESS_REQUEST, 42, authenticator, SECRET, attributes)


def with_mfad(packet: bytes) -> bytes:
    request = decode_request(packet, SECRET)
    assert isinstance(request, RadiusRequest) and request.password == "123456"
    message = [(Attr.REPLY_MESSAGE, chunk) for chunk in split_text("Welcome")]
    return encode_reply(request, RadiusCode.ACCESS_ACCEPT, SECRET, message)


def with_pyrad(packet: bytes) -> bytes:
    request = AuthPacket(packet=packet, dict=DICTIONARY, secret=SECRET)
    assert request.verify_message_authenticator()
    assert request.PwDecrypt(request[2][0]) == "123456"
    reply = request.CreateReply()
    reply.code = AccessAccept
    reply.AddAttribute("Reply-Message", "Welcome")
    return bytes(reply.ReplyPacket())


def rate(work: Callable[[bytes], bytes], packet: bytes, seconds: float) -> float:
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(500):
                work(packet)
            count += 500
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


async def accept_code(request: RadiusRequest, client: RadiusClient) -> Decision | NoReply:
    return Decision.accept() if request.password == "123456" else Decision.reject()


async def listener(count: int, in_flight: int) -> None:
    metrics = CountingMetrics()
    server = RadiusServer(
        RadiusServerSettings(listen=(("127.0.0.1", 0),), client_rate=0, reject_delay=0),
        ClientTable(
            [RadiusClient(name="lo", network=ipaddress.ip_network("127.0.0.1/32"), secret=SECRET)]
        ),
        accept_code,
        metrics=metrics,
    )
    await server.start()
    host, port = server.addresses[0]
    with tempfile.NamedTemporaryFile("w", suffix=".radclient") as request_file:
        request_file.write(
            "User-Name = alice\nUser-Password = 123456\nNAS-Identifier = bench\n"
            "Message-Authenticator = 0x00\n"
        )
        request_file.flush()
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *("radclient", "-q", "-s", "-c", str(count), "-p", str(in_flight), "-r", "3"),
            *("-t", "3", "-f", request_file.name, f"{host}:{port}", "auth", SECRET.decode()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(600):
            output, _ = await process.communicate()
        elapsed = time.perf_counter() - started
    await server.aclose()
    decided = sum(metrics.decided.values())
    lost = re.search(r"Lost\s*:\s*(\d+)", output.decode())
    latencies = sorted(metrics.latencies)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"listener   : {count / elapsed:>9,.0f} requests/s end to end "
        f"({decided} decided, {lost.group(1) if lost else '?'} lost, "
        f"{dict(metrics.dropped) or 'no drops'}; "
        f"in-process p50 {p50:.2f} ms, p99 {p99:.2f} ms; radclient -p {in_flight})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per codec")
    parser.add_argument("--listener", type=int, default=0, help="requests through the listener")
    parser.add_argument("--in-flight", type=int, default=64, help="radclient -p")
    parser.add_argument("--uvloop", action="store_true", help="run the listener on uvloop")
    args = parser.parse_args()
    packet = sample_request()
    # Both codecs must produce a reply the other accepts before their speed means anything.
    pyrad_view = AuthPacket(packet=packet, dict=DICTIONARY, secret=SECRET)
    mine = with_mfad(packet)
    assert pyrad_view.VerifyReply(AuthPacket(packet=mine, dict=DICTIONARY, secret=SECRET), mine)

    mfad_rate = rate(with_mfad, packet, args.seconds)
    pyrad_rate = rate(with_pyrad, packet, args.seconds)
    print(f"python {sys.version.split()[0]}, one core, {len(packet)}-octet Access-Request")
    print(f"mfad codec : {mfad_rate:>9,.0f} requests/s (parse + MA + password + signed reply)")
    print(f"pyrad 2.6  : {pyrad_rate:>9,.0f} requests/s (same work)")
    print(f"ratio      : {mfad_rate / pyrad_rate:.1f}x")
    if args.listener:
        if args.uvloop:
            import uvloop

            uvloop.install()
        print(f"event loop : {'uvloop' if args.uvloop else 'asyncio'}")
        asyncio.run(listener(args.listener, args.in_flight))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The hostile-input attacks of issue 11 made by aiortc, a WebRTC stack no one here wrote,
with real DTLS and SCTP, against a running pipe device (tests/aiortc_attacks.rs runs it).

    attacker.py MODE SIGNAL_URL DEVICE_ID [SECRET]

Modes:
  reorder   answer with aiortc's own answer, its m-sections reversed (aborted webrtcbin 1.22)
  guess     complete DTLS as a stranger and send eight wrong claims on `control`
  channels  as a stranger, open the proxy's channels and send on them; count media frames
  renew     claim with SECRET, then `renew` onto a fingerprint whose key aiortc does not hold,
            and list the grants

Prints one JSON line with what the device did; the Rust test judges it.
"""

import asyncio
import json
import os
import sys

import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp


def reversed_sections(sdp):
    """The same answer with its m-sections in reverse order (BUNDLE group untouched)."""
    lines = sdp.strip().split("\r\n")
    head, sections, current = [], [], None
    for line in lines:
        if line.startswith("m="):
            current = [line]
            sections.append(current)
        elif current is None:
            head.append(line)
        else:
            current.append(line)
    out = head + [line for section in reversed(sections) for line in section]
    return "\r\n".join(out) + "\r\n"


class Attack:
    def __init__(self, mode, secret):
        self.mode, self.secret = mode, secret
        self.pc = RTCPeerConnection()
        self.result = {"mode": mode, "control": [], "frames": 0, "ended": None}
        self.control = None
        self.opened = asyncio.Event()
        self.ended = asyncio.Event()

        @self.pc.on("datachannel")
        def on_channel(channel):
            if channel.label != "control":
                self.result.setdefault("unexpected_channels", []).append(channel.label)
                return
            self.control = channel

            @channel.on("message")
            def on_message(text):
                self.result["control"].append(json.loads(text))

            self.opened.set()

        @self.pc.on("track")
        def on_track(track):
            async def count():
                while True:
                    try:
                        await track.recv()
                    except Exception:
                        return
                    self.result["frames"] += 1

            asyncio.ensure_future(count())

    async def answer(self, offer):
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        if self.mode == "reorder":
            sdp = reversed_sections(sdp)
        return {"type": "answer", "sdp": sdp}

    async def signalling(self, ws, device_id):
        await ws.send(json.dumps({"type": "connect", "device_id": device_id}))
        session = None
        async for text in ws:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "session":
                session = message["session_id"]
            elif kind == "signal" and "sdp" in message["data"]:
                answer = await self.answer(message["data"]["sdp"])
                await ws.send(json.dumps(
                    {"type": "signal", "session_id": session, "data": {"sdp": answer}}))
            elif kind == "signal" and "ice" in message["data"]:
                ice = message["data"]["ice"]
                if ice["candidate"]:
                    candidate = candidate_from_sdp(ice["candidate"].split(":", 1)[1])
                    candidate.sdpMLineIndex = ice["sdp_m_line_index"]
                    await self.pc.addIceCandidate(candidate)
            elif kind in ("end", "error"):
                self.result["ended"] = message
                self.ended.set()
                return

    async def replies(self, kind, count, timeout):
        """Waits until `count` control messages of `kind` have come."""
        async def enough():
            while sum(1 for m in self.result["control"] if m.get("type") == kind) < count:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(enough(), timeout)

    async def run(self):
        if self.mode == "reorder":
            await asyncio.wait_for(self.ended.wait(), 15)
            return
        await asyncio.wait_for(self.opened.wait(), 15)
        await self.replies("access", 1, 10)
        if self.mode == "guess":
            for n in range(8):
                self.control.send(json.dumps({"type": "claim", "secret": f"wrong-{n:02d}-" + "x" * 20}))
            await self.replies("error", 8, 10)
            await asyncio.wait_for(self.ended.wait(), 15)
        elif self.mode == "channels":
            for label in ("proxy-0", "proxy-1", "bench-ceiling"):
                channel = self.pc.createDataChannel(label)

                @channel.on("open")
                def on_open(channel=channel):
                    channel.send(b"\x00" * 64)

                @channel.on("close")
                def on_close(channel=channel):
                    self.result.setdefault("closed_by_device", []).append(channel.label)
            await asyncio.wait_for(self.ended.wait(), 15)
        elif self.mode == "renew":
            self.control.send(json.dumps({"type": "claim", "secret": self.secret}))
            await self.replies("done", 1, 10)
            elsewhere = ":".join(f"{b:02X}" for b in os.urandom(32))
            self.result["renewed_to"] = elsewhere
            self.control.send(json.dumps({"type": "renew", "fingerprint": elsewhere}))
            await self.replies("done", 2, 10)
            self.control.send(json.dumps({"type": "grants"}))
            await self.replies("grants", 1, 10)
            before = self.result["frames"]
            await asyncio.sleep(2)
            self.result["frames_after_renew"] = self.result["frames"] - before
            self.result["own"] = self.own_fingerprint()

    def own_fingerprint(self):
        for line in self.pc.localDescription.sdp.split("\r\n"):
            if line.startswith("a=fingerprint:sha-256 "):
                return line.split(" ", 1)[1].upper()
        return None


async def main(mode, url, device_id, secret):
    attack = Attack(mode, secret)
    async with websockets.connect(url, max_size=1 << 20) as ws:
        task = asyncio.ensure_future(attack.signalling(ws, device_id))
        try:
            await attack.run()
        except asyncio.TimeoutError:
            attack.result["timed_out"] = True
        task.cancel()
        await attack.pc.close()
    print(json.dumps(attack.result))


if __name__ == "__main__":
    mode, url, device_id = sys.argv[1:4]
    secret = sys.argv[4] if len(sys.argv) > 4 else ""
    asyncio.run(main(mode, url, device_id, secret))

"""An honest aiortc viewer of a pipe device: connect through the rendezvous, answer the
device's offer, claim the device over the `control` channel, and count decoded video frames.

    viewer.py SIGNAL_URL DEVICE_ID CLAIM_SECRET FRAMES TIMEOUT_S

Prints one JSON line: {"frames": N, "width": W, "height": H, "access": {...}, "ended": ...}
and exits 0 when FRAMES frames were decoded within TIMEOUT_S, 1 otherwise.
"""

import asyncio
import json
import sys

import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp


async def main(url, device_id, secret, want, timeout):
    result = {"frames": 0, "width": 0, "height": 0, "access": None, "ended": None}
    done = asyncio.Event()
    pc = RTCPeerConnection()

    @pc.on("datachannel")
    def on_channel(channel):
        if channel.label != "control":
            return

        @channel.on("message")
        def on_message(text):
            message = json.loads(text)
            if message.get("type") == "access":
                result["access"] = message
                if message.get("role") is None and secret:
                    channel.send(json.dumps({"type": "claim", "secret": secret}))

    @pc.on("track")
    def on_track(track):
        if track.kind != "video":
            return

        async def count():
            while True:
                frame = await track.recv()
                result["frames"] += 1
                result["width"], result["height"] = frame.width, frame.height
                if result["frames"] >= want:
                    done.set()
                    return

        asyncio.ensure_future(count())

    async with websockets.connect(url, max_size=1 << 20) as ws:
        await ws.send(json.dumps({"type": "connect", "device_id": device_id}))
        session = None

        async def signalling():
            nonlocal session
            async for text in ws:
                message = json.loads(text)
                kind = message.get("type")
                if kind == "session":
                    session = message["session_id"]
                elif kind == "signal" and "sdp" in message["data"]:
                    offer = message["data"]["sdp"]
                    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
                    await pc.setLocalDescription(await pc.createAnswer())
                    answer = {"type": "answer", "sdp": pc.localDescription.sdp}
                    await ws.send(json.dumps(
                        {"type": "signal", "session_id": session, "data": {"sdp": answer}}))
                elif kind == "signal" and "ice" in message["data"]:
                    ice = message["data"]["ice"]
                    if ice["candidate"]:
                        candidate = candidate_from_sdp(ice["candidate"].split(":", 1)[1])
                        candidate.sdpMLineIndex = ice["sdp_m_line_index"]
                        await pc.addIceCandidate(candidate)
                elif kind in ("end", "error"):
                    result["ended"] = message
                    done.set()
                    return

        task = asyncio.ensure_future(signalling())
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            result["ended"] = f"timed out after {timeout} s"
        task.cancel()
        await pc.close()
    print(json.dumps(result))
    return 0 if result["frames"] >= want else 1


if __name__ == "__main__":
    url, device_id, secret, want, timeout = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, device_id, secret, int(want), float(timeout))))

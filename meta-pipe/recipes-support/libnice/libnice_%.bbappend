# nicesrc and nicesink, the ICE transport webrtcbin uses (in the libnice package).
PACKAGECONFIG:append:with-pipe = " gstreamer"

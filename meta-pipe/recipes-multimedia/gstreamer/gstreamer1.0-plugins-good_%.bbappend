# v4l2src, v4l2convert and v4l2h264enc (the Raspberry Pi 4's hardware encoder, bcm2835-codec).
PACKAGECONFIG:append:with-pipe = " v4l2"

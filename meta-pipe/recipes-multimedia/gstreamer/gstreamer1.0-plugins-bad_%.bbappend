# webrtcbin and what it creates inside: DTLS, SRTP, SCTP (data channels); openh264enc for the
# Raspberry Pi 5, which has no hardware H.264 encoder, when its licence flag is accepted.
# Only with the "with-pipe" override (conf/distro/include/pipe.inc): otherwise this changes nothing.
PACKAGECONFIG:append:with-pipe = " webrtc dtls srtp sctp"
PACKAGECONFIG:append:with-pipe = "${@bb.utils.contains_any('LICENSE_FLAGS_ACCEPTED', 'commercial commercial_openh264', ' openh264', '', d)}"

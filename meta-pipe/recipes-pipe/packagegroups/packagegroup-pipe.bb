SUMMARY = "pipe and every GStreamer element its capture chains use"
DESCRIPTION = "The pipe service, the cameras (V4L2, libcamera), the encoders (the Raspberry Pi 4's \
               hardware encoder; x264 and openh264 when their licence flags are accepted) and the \
               test picture."
SECTION = "multimedia"
LICENSE = "MIT"

PACKAGE_ARCH = "${TUNE_PKGARCH}"

inherit packagegroup features_check

REQUIRED_DISTRO_FEATURES = "pipe systemd"

# The software encoders carry LICENSE_FLAGS commercial: only when accepted (see
# conf/distro/include/pipe.inc). x264 for USB webcams and the test picture, openh264 for the Pi 5.
PIPE_X264 = "${@bb.utils.contains_any('LICENSE_FLAGS_ACCEPTED', 'commercial commercial_gstreamer1.0-plugins-ugly', 'gstreamer1.0-plugins-ugly-x264', '', d)}"
PIPE_OPENH264 = "${@bb.utils.contains_any('LICENSE_FLAGS_ACCEPTED', 'commercial commercial_openh264', 'gstreamer1.0-plugins-bad-openh264', '', d)}"

RDEPENDS:${PN} = "${PIPE_OPENH264} \
                  ${PIPE_X264} \
                  gstreamer1.0 \
                  gstreamer1.0-plugins-base-audioconvert \
                  gstreamer1.0-plugins-base-audioresample \
                  gstreamer1.0-plugins-base-audiotestsrc \
                  gstreamer1.0-plugins-base-opus \
                  gstreamer1.0-plugins-base-pango \
                  gstreamer1.0-plugins-base-videoconvertscale \
                  gstreamer1.0-plugins-base-videotestsrc \
                  gstreamer1.0-plugins-good-rtsp \
                  gstreamer1.0-plugins-good-udp \
                  gstreamer1.0-plugins-good-video4linux2 \
                  gstreamer1.0-plugins-good-videofilter \
                  libcamera-gst \
                  pipe \
                  v4l-utils \
                  "

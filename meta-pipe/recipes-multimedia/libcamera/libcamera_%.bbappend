# libcamerasrc (package libcamera-gst) for the Raspberry Pi camera modules.
PACKAGECONFIG:append:with-pipe = " gst"

# x264enc (USB webcams, the test picture). The recipe carries LICENSE_FLAGS commercial: unless
# that is accepted, plugins-ugly is not built at all and pipe uses the other encoders.
PACKAGECONFIG:append:with-pipe = " x264"

# pipe needs libx264 only. The ffmpeg option builds the x264 command line's input readers and
# would pull ffmpeg (another LICENSE_FLAGS commercial recipe) into the image build.
PACKAGECONFIG:remove:with-pipe = "ffmpeg"

# opusenc for the audio track, pango for clockoverlay on the test picture.
PACKAGECONFIG:append:with-pipe = " opus pango"

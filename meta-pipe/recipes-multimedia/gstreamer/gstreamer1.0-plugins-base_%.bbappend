# opusenc for the audio track, pango for clockoverlay on the test picture.
PACKAGECONFIG:append:pipe = " opus pango"

# Where LibriSpeech lives (the directory that holds LibriSpeech/<part>), as ESPnet's db.sh.
# Empty: local/data.sh downloads the parts from openslr into downloads/.
LIBRISPEECH=${LIBRISPEECH:-}

#!/usr/bin/env python
"""Build a synthetic spoken corpus with espeak-ng and flite (``nemo_asr.synthetic_speech``; ``--help``)."""
from nemo_asr.synthetic_speech import main

if __name__ == "__main__":
    main()

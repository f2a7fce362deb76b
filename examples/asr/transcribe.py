#!/usr/bin/env python
"""Transcribe audio files or a manifest (same as the ``nemo-transcribe`` command)."""
from nemo_asr.transcribe import main

if __name__ == "__main__":
    main()

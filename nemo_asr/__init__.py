"""nemo_asr: the speech-recognition collection (built on nemo_core's public API).

Empty until its issue lands: data layers, preprocessing, Jasper/QuartzNet, CTC.
"""
__version__ = "0.1.0"

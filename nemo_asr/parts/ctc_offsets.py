"""Word timings in seconds: from a greedy CTC alignment (``word_offsets``) or
from the per-word frame spans a beam search reports (``words_from_frames``).
Either way the words are those of the text they come with."""


def word_spans(frame_labels, labels, blank=None, space=" "):
    """``[(word, first_frame, end_frame)]`` (end exclusive) from per-frame best labels.

    A character spans the frames where it is emitted (repeats included); a
    word runs from its first character's first frame to the end of its last
    character's last frame. ``frame_labels`` must be cut to the valid frames.
    """
    blank = len(labels) if blank is None else blank
    spans, current, start, end, previous = [], [], None, None, blank
    for frame, label in enumerate(frame_labels):
        if label == blank:
            previous = label
            continue
        char = labels[label]
        if label == previous:
            if current:
                end = frame + 1
            continue
        previous = label
        if char == space:
            if current:
                spans.append(("".join(current), start, end))
            current, start, end = [], None, None
            continue
        if not current:
            start = frame
        current.append(char)
        end = frame + 1
    if current:
        spans.append(("".join(current), start, end))
    return spans


def word_offsets(frame_labels, labels, frame_seconds, blank=None, space=" "):
    """``[{"word", "start", "end"}]`` (seconds) of the greedy alignment's words (``word_spans``)."""
    return words_from_frames(word_spans(frame_labels, labels, blank, space), frame_seconds)


def words_from_frames(word_frames, frame_seconds):
    """``[{"word", "start", "end"}]`` (seconds) from ``[(word, first_frame, end_frame)]`` (end exclusive),
    e.g. ``BeamSearchDecoderWithLM.decode(..., word_frames=True)``'s spans of its best beam."""
    return [{"word": word, "start": round(start * frame_seconds, 3), "end": round(end * frame_seconds, 3)}
            for word, start, end in word_frames]

"""Where every benchmark leaves its figures: one JSON file, folders made as needed."""
import json
import os


def write_results(path, data, indent=2):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle, indent=indent)

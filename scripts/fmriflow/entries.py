"""Config entries unpacked into library calls, for the nodes that share them.

The library takes explicit, named parameters; only nodes know the shape of
the config. Where two nodes unpack the same keys of an entry the same way
(decoding and searchlight analyses both select labels and runs, and both
cross-validate by run), the unpacking is written once, here.
"""

from fmriflow import decoding


def subject_analysis(inputs, entry):
    """A subject's data for a decoding or searchlight entry.

    Parameters
    ----------
    inputs : mapping
        The node's inputs: ``clean``, ``events``, ``mask`` and, for an
        analysis on the subject ROI, ``roi``.
    entry : dict
        The analysis' config entry (``labels``, ``drop_incomplete_runs``).

    Returns
    -------
    fmriflow.decoding.SubjectAnalysis
    """
    return decoding.load_subject_analysis(
        inputs["clean"],
        inputs["events"],
        inputs["mask"],
        entry["labels"],
        entry["drop_incomplete_runs"],
        roi_path=inputs.get("roi"),
    )


def cross_validation(entry):
    """The splitter of an entry's ``cv`` section and ``seed`` (see ``decoding.make_cv``)."""
    return decoding.make_cv(**entry["cv"], seed=entry["seed"])

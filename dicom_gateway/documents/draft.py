"""What the research-draft SR says, as plain values, and the identity it is filed under.

``DraftReport`` is the result crossing from the model to DICOM (no model objects cross
this line): its status, coded labels, texts and the algorithm that made it, refusing a
draft that would code findings for a result that is not a reading.  ``SRIdentity``
derives every UID the SR carries from the installation's seed, so that a repeated task
writes the same SR and nothing else reuses its UIDs.  ``dicom_gateway/documents/sr.py`` turns the
two into a DICOM document.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dicom_gateway.documents import codes as sr_codes
from dicom_gateway.uids import derived_uid

STATUS_SENTENCES = {
    "ok": "The model's answer names {n} of the 14 CheXpert labels; each is coded below as "
          "an unverified AI finding.",
    "refused": "The model declined to analyse this image (refusal). No findings are asserted; "
               "this is not a normal result.",
    "truncated": "The model's output was cut off before its answer was complete. No findings "
                 "are asserted; this is not a normal result.",
    "unparseable": "The model's output had no answer section that could be read. No findings "
                   "are asserted; this is not a normal result.",
    "no_labels": "The model's answer named none of the 14 CheXpert labels (not even "
                 "'No Finding'). No findings are asserted; this is not a normal result.",
    "mock": "MOCK: no model read this image. The gateway's mock backend produced this SR to "
            "test the wiring; nothing in it is a finding.",
}
MOCK_WITH_LABELS = (
    "MOCK: no model read this image. The coded labels below were named by the gateway's "
    "configuration (CXR_MOCK_LABELS) for a wiring test; they are not findings."
)
REPORT_TRUNCATED = (
    "The structured report was cut off at its token limit; the report text below is "
    "incomplete."
)
NO_REPORT = "No structured report was requested, because the first answer was not a reading."
LABELLED_STATUSES = ("ok", "mock")


@dataclass(frozen=True)
class Algorithm:
    """TID 4019 algorithm identification."""

    name: str
    version: str
    manufacturer: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class DraftReport:
    """Everything the SR says, as plain values (no model objects cross this line).

    ``report_sections`` is the structured report as the model wrote it: (heading, items)
    in order, heading "" for text before the first heading.  The constructor refuses a
    draft that would code findings for a result that is not a reading.
    """

    status: str  # ok | refused | truncated | unparseable | no_labels | mock
    labels: tuple[str, ...]
    reasoning: str
    algorithm: Algorithm
    is_mock: bool
    answer_text: str = ""
    report_sections: tuple[tuple[str, tuple[str, ...]], ...] = ()
    report_text: str = ""
    report_reasoning: str = ""
    report_truncated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.status not in STATUS_SENTENCES:
            raise ValueError(f"unknown result status {self.status!r}")
        if (self.status == "mock") != self.is_mock:
            raise ValueError("a mock result has status 'mock', and only a mock result has it")
        unknown = [lab for lab in self.labels if lab not in sr_codes.LABEL_CODES]
        if unknown:
            raise ValueError(f"labels without a code: {unknown}")
        if self.status not in LABELLED_STATUSES and self.labels:
            raise ValueError(f"a {self.status} result asserts no findings")
        if self.status == "ok" and not self.labels:
            raise ValueError("an ok result names at least one label")

    @property
    def status_sentence(self) -> str:
        if self.status == "mock" and self.labels:
            return MOCK_WITH_LABELS
        return STATUS_SENTENCES[self.status].format(n=len(self.labels))


@dataclass(frozen=True)
class SRIdentity:
    """Every UID and name the SR is filed under (see :meth:`derive`)."""

    series_instance_uid: str
    sop_instance_uid: str
    instance_number: int
    manufacturer: str
    software_version: str
    site_name: str
    device_observer_uid: str

    @classmethod
    def derive(cls, installation_seed: str, study_uid: str, job_key: str, version: int,
               model_key: str, manufacturer: str, software_version: str,
               site_name: str) -> SRIdentity:
        """UIDs from this installation's seed: the same job version gives the same UIDs
        (a repeated task overwrites, never duplicates); another installation, database or
        model (``model_key``: backend, model id and revision) gives different ones."""
        return cls(
            series_instance_uid=derived_uid(installation_seed, "sr-series", study_uid,
                                            model_key),
            sop_instance_uid=derived_uid(installation_seed, "sr-instance", study_uid,
                                         job_key, str(version), model_key),
            instance_number=version,
            manufacturer=manufacturer,
            software_version=software_version,
            site_name=site_name,
            device_observer_uid=derived_uid(installation_seed, "device-observer", model_key),
        )

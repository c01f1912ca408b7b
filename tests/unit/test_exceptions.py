"""What a new error takes over from the error it reports."""

from __future__ import annotations

from airflow_provider_iotfleet.exceptions import IoTFleetNotAttemptedError, IoTFleetVendorResponseError


def test_a_new_error_reports_its_causes_status_code_and_request_id() -> None:
    cause = IoTFleetVendorResponseError(
        "Vendor: PUT /things failed: refused",
        http_status=400,
        error_code="E400",
        request_id="rid-1",
        vendor="Vendor",
        bare_message="refused",
    )
    assert cause.answer_details() == {"http_status": 400, "error_code": "E400", "request_id": "rid-1"}

    skipped = IoTFleetNotAttemptedError.after(cause)
    assert (skipped.http_status, skipped.error_code, skipped.request_id, skipped.vendor) == (
        400,
        "E400",
        "rid-1",
        "Vendor",
    )
    assert skipped.bare_message == "not attempted after an earlier error: refused"
    assert skipped.cause is cause

"""One hook per vendor platform; all of them share :mod:`airflow_provider_iotfleet.http`."""

# ruff: noqa: E501  (the requests are kept exactly as sent)
"""Upload job entries exactly as the original service's client models send them in a
``POST /api/v2/submit_jobs`` body (``upload_jobs``): a full one and a minimal one."""

from __future__ import annotations

import json
from typing import Any

FULL_JOBS: list[dict[str, Any]] = json.loads(
    r"""
[
  {
    "job_type": "ecephys",
    "user_email": "scientist@example.org",
    "email_notification_types": [
      "end",
      "fail"
    ],
    "s3_bucket": "open",
    "project_name": "Ephys Platform",
    "platform": {
      "name": "Electrophysiology platform",
      "abbreviation": "ecephys"
    },
    "modalities": [
      {
        "name": "Extracellular electrophysiology",
        "abbreviation": "ecephys"
      },
      {
        "name": "Behavior videos",
        "abbreviation": "behavior-videos"
      }
    ],
    "subject_id": "700001",
    "acq_datetime": "2025-04-01T14:30:15",
    "tasks": {
      "modality_transformation_settings": {
        "ecephys": {
          "skip_task": false,
          "image": "ghcr.io/example/ephys-compression",
          "image_version": "1.2.0",
          "image_resources": {
            "cpus_per_task": 8,
            "memory_per_node": 64000,
            "time_limit": 360
          },
          "job_settings": {
            "input_source": "/data/rig/s700001/ecephys",
            "compress_raw_data": true
          },
          "command_script": "singularity exec --cleanenv docker://%IMAGE:%IMAGE_VERSION python -m compress --job-settings ' %JOB_SETTINGS '"
        },
        "behavior-videos": {
          "skip_task": false,
          "image": null,
          "image_version": null,
          "image_resources": null,
          "job_settings": {
            "input_source": "/data/rig/s700001/videos"
          },
          "command_script": null
        }
      },
      "gather_preliminary_metadata": {
        "skip_task": false,
        "image": null,
        "image_version": null,
        "image_resources": null,
        "job_settings": {
          "metadata_dir": "/data/rig/s700001/metadata"
        },
        "command_script": null
      },
      "copy_derivatives_folder": {
        "skip_task": false,
        "image": null,
        "image_version": null,
        "image_resources": null,
        "job_settings": {
          "input_source": "/data/rig/s700001/derivatives"
        },
        "command_script": null
      },
      "check_s3_folder_exists": {
        "skip_task": true,
        "image": null,
        "image_version": null,
        "image_resources": null,
        "job_settings": null,
        "command_script": null
      },
      "codeocean_pipeline_settings": {
        "ecephys": {
          "skip_task": false,
          "image": null,
          "image_version": null,
          "image_resources": null,
          "job_settings": {
            "pipeline_monitor_settings": {
              "run_params": {
                "pipeline_id": "123-456"
              }
            }
          },
          "command_script": null
        }
      }
    },
    "s3_prefix": "ecephys_700001_2025-04-01_14-30-15"
  },
  {
    "job_type": "default",
    "user_email": "other@example.org",
    "email_notification_types": [
      "end",
      "begin",
      "fail"
    ],
    "s3_bucket": "default",
    "project_name": "Behavior Platform",
    "platform": null,
    "modalities": [
      {
        "name": "Behavior",
        "abbreviation": "behavior"
      }
    ],
    "subject_id": "700002",
    "acq_datetime": "2025-04-02T08:00:00",
    "tasks": {
      "modality_transformation_settings": {
        "behavior": {
          "skip_task": false,
          "image": null,
          "image_version": null,
          "image_resources": null,
          "job_settings": {
            "input_source": "/data/rig/s700002/behavior"
          },
          "command_script": null
        }
      },
      "remove_source_folders": {
        "skip_task": false,
        "image": null,
        "image_version": null,
        "image_resources": null,
        "job_settings": null,
        "command_script": null
      }
    },
    "s3_prefix": "700002_2025-04-02_08-00-00"
  }
]
"""
)

MINIMAL_JOB: dict[str, Any] = json.loads(
    r"""
{
  "job_type": "default",
  "user_email": "scientist@example.org",
  "email_notification_types": [
    "fail"
  ],
  "s3_bucket": "default",
  "project_name": "Ephys Platform",
  "platform": null,
  "modalities": [
    {
      "name": "Extracellular electrophysiology",
      "abbreviation": "ecephys"
    }
  ],
  "subject_id": "690165",
  "acq_datetime": "2025-03-07T09:05:00",
  "tasks": {
    "modality_transformation_settings": {
      "ecephys": {
        "skip_task": false,
        "image": null,
        "image_version": null,
        "image_resources": null,
        "job_settings": {
          "input_source": "/data/rig/session_690165/ecephys"
        },
        "command_script": null
      }
    }
  },
  "s3_prefix": "690165_2025-03-07_09-05-00"
}
"""
)

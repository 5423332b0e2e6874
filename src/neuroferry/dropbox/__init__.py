"""Drop-boxes: an analysis published at a store location with a folder per user group;
a ``*submit.json`` dropped in a group's ``submissions/`` becomes an ``analysis`` job, with
its certificate, dataset status files and ``end.txt`` written back in the original's
layout. Importing the package registers its periodic watchers with the engine, and
shows each drop-box job to the members of its group."""

from neuroferry.dropbox._audience import group_jobs
from neuroferry.dropbox._bypass import (
    Bypass,
    group_bypass,
    remove_group_bypass,
    set_group_bypass,
)
from neuroferry.dropbox._files import (
    GroupFiles,
    SubmitFile,
    check_path,
    delete_group_file,
    group_files,
    list_group_files,
    list_group_folders,
    presign_group_file,
    read_group_file,
    submit,
    submit_file,
    write_group_file,
)
from neuroferry.dropbox._layout import (
    END_MARKER,
    certificate_key,
    dataset_names,
    end_key,
    job_folder,
    status_key,
)
from neuroferry.dropbox._policy import group_policy
from neuroferry.dropbox._registry import (
    FOLDERS,
    Dropbox,
    Group,
    Limits,
    add_group,
    check_name,
    get_dropbox,
    list_dropboxes,
    publish_dropbox,
    set_group_limits,
)
from neuroferry.dropbox._watcher import (
    REFRESHER,
    REFRESHER_NAME,
    WATCHER,
    WATCHER_NAME,
    Watch,
    refresh_dropbox_jobs,
    watch_dropboxes,
)

__all__ = [
    "END_MARKER",
    "FOLDERS",
    "REFRESHER",
    "REFRESHER_NAME",
    "WATCHER",
    "WATCHER_NAME",
    "Bypass",
    "Dropbox",
    "Group",
    "GroupFiles",
    "Limits",
    "SubmitFile",
    "Watch",
    "add_group",
    "certificate_key",
    "check_name",
    "check_path",
    "dataset_names",
    "delete_group_file",
    "end_key",
    "get_dropbox",
    "group_bypass",
    "group_files",
    "group_jobs",
    "group_policy",
    "job_folder",
    "list_dropboxes",
    "list_group_files",
    "list_group_folders",
    "presign_group_file",
    "publish_dropbox",
    "read_group_file",
    "refresh_dropbox_jobs",
    "remove_group_bypass",
    "set_group_bypass",
    "set_group_limits",
    "status_key",
    "submit",
    "submit_file",
    "watch_dropboxes",
    "write_group_file",
]

"""nbgrader's configuration for this course; nbgrader reads it from the directory it runs in.

The course directory is this repository: source/<chapter>/ (written by `dprp release` from
notebooks/), release/, submitted/, autograded/, feedback/ and gradebook.db, all beside this file.
The settings themselves live in dprp_lib.course.release.course_config, which `dprp release` and the tests
use as well.
"""
from pathlib import Path

from dprp_lib.course.release import course_config, in_process_alembic

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)
c.merge(course_config(Path(__file__).resolve().parent))
in_process_alembic()  # a new gradebook works without `alembic` on PATH

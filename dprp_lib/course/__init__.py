"""The course: what every chapter does first and last, the figures, the widgets, the headless build
and its site, and the students' release of the exercises.

Builds on the method and the engine; nothing imports the course.
"""

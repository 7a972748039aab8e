"""What a person or a CI server reads: terminal summary, JSON, HTML, PNG, JUnit, the live view."""

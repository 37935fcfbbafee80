"""The broker matrix (issue 16): one end-to-end suite against every broker mqtthub supports."""

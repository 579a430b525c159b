//! Prometheus text exposition (0.0.4) and OpenMetrics text parser.

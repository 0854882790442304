package server

import (
	"context"
	"log/slog"
)

// AuditForTest calls audit on a bare Server with the given logger.
func AuditForTest(log *slog.Logger, ctx context.Context, event string, attrs ...slog.Attr) {
	(&Server{o: Options{Logger: log}}).audit(ctx, event, attrs...)
}

package metrics

import (
	"context"
	"errors"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// JobOutcomes is River middleware that counts each job attempt by kind and
// outcome. It sees the worker's error before River acts on it, and decides
// the outcome the way River will.
type JobOutcomes struct {
	river.MiddlewareDefaults
	Metrics *Metrics
}

func (o *JobOutcomes) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) (err error) {
	returned := false
	defer func() {
		if !returned { // a panic: River recovers it and retries the job
			o.Metrics.JobFinished(job.Kind, failedOutcome(job))
		}
	}()
	err = doInner(ctx)
	returned = true
	o.Metrics.JobFinished(job.Kind, JobOutcome(job, err))
	return err
}

// JobOutcome is what River does with an attempt of job that returned err.
func JobOutcome(job *rivertype.JobRow, err error) string {
	var snooze *river.JobSnoozeError
	var cancel *river.JobCancelError
	switch {
	case err == nil:
		return JobCompleted
	case errors.As(err, &snooze):
		return JobSnoozed
	case errors.As(err, &cancel):
		return JobCancelled
	}
	return failedOutcome(job)
}

func failedOutcome(job *rivertype.JobRow) string {
	if job.Attempt >= job.MaxAttempts {
		return JobDiscarded
	}
	return JobRetried
}

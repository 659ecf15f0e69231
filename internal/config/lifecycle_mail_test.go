package config_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"fulfiller/internal/config"
	"fulfiller/internal/mail"
)

func TestLifecycleMailSettings(t *testing.T) {
	t.Parallel()
	withMail := map[string]string{"SMTP_URL": "smtp://u:pw@mail.example", "MAIL_FROM": "keys@shop.example", "PUBLIC_BASE_URL": "https://shop.example"}
	c, err := config.FromEnv(env(withMail))
	require.NoError(t, err)
	require.Equal(t, config.DefaultExpiryNoticeDays, c.Mail.ExpiryNoticeDays)
	for _, k := range mail.Kinds {
		require.True(t, c.Mail.Sends(k), "every email is sent by default: %s", k)
	}

	withMail["MAIL_DISABLE"] = " reissued, trial_ending "
	withMail["MAIL_EXPIRY_NOTICE_DAYS"] = "0"
	c, err = config.FromEnv(env(withMail))
	require.NoError(t, err)
	require.False(t, c.Mail.Sends(mail.KindReissued))
	require.False(t, c.Mail.Sends(mail.KindTrialEnding))
	require.True(t, c.Mail.Sends(mail.KindKeys))
	require.Zero(t, c.Mail.ExpiryNoticeDays, "0 turns the expiry notice off")

	// A typo is refused by name, with the names there are, mail on or
	// off: it would otherwise leave an email on the shop meant off.
	withMail["MAIL_DISABLE"], withMail["MAIL_EXPIRY_NOTICE_DAYS"] = "reissued,trial_ended", "91"
	for _, extra := range []map[string]string{
		withMail,
		{"MAIL_DISABLE": "trial_ended", "MAIL_EXPIRY_NOTICE_DAYS": "three"},
	} {
		_, err = config.FromEnv(env(extra))
		var errs config.Errors
		require.True(t, errors.As(err, &errs), "%v", err)
		require.True(t, errs.Has("MAIL_DISABLE"))
		require.True(t, errs.Has("MAIL_EXPIRY_NOTICE_DAYS"))
		require.Contains(t, err.Error(), `"trial_ended"`)
		require.Contains(t, err.Error(), "trial_ending")
		require.Contains(t, err.Error(), "0 (off) to 90")
	}
}
